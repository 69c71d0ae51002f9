#!/usr/bin/env bash
# uncanny on a GPU machine: one script, run from the project root on a machine with an NVIDIA GPU (no display, no
# internet needed). Everything it measures goes to $OUT (logs, JSON, summary.txt); it stops itself within BUDGET
# seconds (default 470), with a `timeout` on every step, and skips what no longer fits.
#
#   bash benchmarks/gpu_check.sh              # figures into $OUT if set, otherwise ./gpucheck-out
#   SMOKE=1 bash benchmarks/gpu_check.sh      # the same on a CPU with tiny models (to check this script)
#
# Offline extras it uses where present: .gl/*.deb (libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2, from
# `apt-get download`), unpacked into / for EGL through glvnd; .wheels/ (moderngl glcontext glfw python-osc
# imageio-ffmpeg pillow numpy pytest, from `pip download` for the machine's Python), installed without the network.
#
# Steps, each with its own log in $OUT:
#   setup    .gl and .wheels; /dev/shm enlarged where it is small and we may
#   env      GPU, torch/CUDA/cuDNN, ffmpeg and NVENC, the EGL renderer, /dev/shm               -> env.json
#   gen      benchmarks/bench_gpu.py --parts gen,step: generation, the inverted step, snapshots  -> gen.json
#   live     benchmarks/bench_gpu.py --parts live: 1920x1080 and 3840x2160, training and paused   -> live.json
#   display  benchmarks/bench_display.py at 3840x2160
#   cli      run_installation.py --headless --device cuda, the real entry point with ffmpeg
#   tests    the tests that behave differently with a GPU: CUDA paths, device checks, the ones that assumed none
#   summary  the tables of gen and live, the tests' results, the entry point's status        -> summary.txt
set -u -o pipefail

for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done; command -v ldconfig >/dev/null && ldconfig

T0=$(date +%s)
BUDGET=${BUDGET:-470}
RESERVE=${RESERVE:-15}
PY=${PY:-python3}
SMOKE=${SMOKE:-0}
OUT=${OUT:-$PWD/gpucheck-out}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/gpucheck.XXXXXX)  # large files that need not come back (the checkpoint, the run folder)
export OUT SMOKE PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

elapsed() { echo $(( $(date +%s) - T0 )); }
remaining() { echo $(( BUDGET - RESERVE - $(elapsed) )); }
note() { echo "[$(elapsed)s] $*"; }

# run_step NAME LIMIT MINIMUM COMMAND...: output in $OUT/NAME.log, a line in $OUT/steps.tsv; skipped when fewer than
# MINIMUM seconds are left, its limit cut to what is left. ONLY=regex runs a subset.
run_step() {
    local name=$1 limit=$2 minimum=$3 left started code
    shift 3
    if ! [[ $name =~ ${ONLY:-.} ]]; then return 0; fi
    left=$(remaining)
    if (( left < minimum )); then
        note "SKIP $name: ${left}s left, it needs ${minimum}s"
        printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$OUT/steps.tsv"
        return 0
    fi
    (( limit > left )) && limit=$left
    note "START $name (limit ${limit}s)"
    started=$(date +%s)
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    code=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$code" "$(( $(date +%s) - started ))" "$limit" >> "$OUT/steps.tsv"
    local late=""
    (( code == 124 || code == 137 )) && late=" (TIMED OUT)"
    note "END $name: exit $code after $(( $(date +%s) - started ))s$late"
    tail -n 4 "$OUT/$name.log" | sed 's/^/      /'
    return 0
}

SMI_PID=
smi_start() {  # nvidia-smi samples every 0.5 s into $OUT/$1.csv (GPU memory and utilisation beside the figures)
    command -v nvidia-smi >/dev/null || return 0
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw,clocks.sm,temperature.gpu \
        --format=csv,noheader,nounits -lms 500 > "$OUT/$1.csv" 2>&1 &
    SMI_PID=$!
}
smi_stop() { [ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null && wait "$SMI_PID" 2>/dev/null; SMI_PID=; }
trap 'smi_stop; rm -rf "$WORK"' EXIT

setup() {
    if [ -d .wheels ]; then  # offline; what is installed already and satisfies stays (torch's numpy among them)
        export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
        local p
        for p in moderngl glcontext glfw python-osc imageio-ffmpeg pillow numpy pytest; do
            "$PY" -m pip install -q --no-index --find-links .wheels "$p" 2>&1 | tail -n 2 || echo "could not install $p"
        done
    else
        echo "no .wheels folder: using what is installed"
    fi
    df -h /dev/shm /tmp . 2>/dev/null
    if [ "$SMOKE" != 1 ] && [ "$(df -Pm /dev/shm | awk 'NR==2 {print $4}')" -lt 512 ] 2>/dev/null; then
        # the frame ring of a 1024 px walk wants more than the 64 MB containers give /dev/shm (README, "GPU")
        mount -o remount,size=2g /dev/shm && echo "remounted /dev/shm at 2 GB" || echo "could not enlarge /dev/shm"
    fi
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode \
        --format=csv
    return 0
}
# EGL through glvnd with NVIDIA's vendor library, where the machine has one (GLFW windows need a display: none here)
for j in /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json /usr/share/glvnd/egl_vendor.d/10_nvidia.json \
         /etc/glvnd/egl_vendor.d/10_nvidia.json; do
    if [ "$SMOKE" != 1 ] && [ -f "$j" ]; then export __EGL_VENDOR_LIBRARY_FILENAMES=$j; break; fi
done
for d in /usr/local/nvidia/lib /usr/local/nvidia/lib64; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
# glcontext finds libEGL/libGL with ctypes.util.find_library (the ldconfig cache); name them where that fails
if [ -z "$("$PY" -c 'from ctypes.util import find_library as f; print(f("EGL") or "")' 2>/dev/null)" ]; then
    for l in /usr/lib/x86_64-linux-gnu/libEGL.so.1 /usr/lib64/libEGL.so.1; do
        [ -f "$l" ] && export GLCONTEXT_LINUX_LIBEGL=$l && break
    done
    for l in /usr/lib/x86_64-linux-gnu/libGL.so.1 /usr/lib64/libGL.so.1; do
        [ -f "$l" ] && export GLCONTEXT_LINUX_LIBGL=$l && break
    done
fi

if [ "$SMOKE" = 1 ]; then
    BENCH=(--smoke --device cpu); DISPLAY_SIZE=(--width 320 --height 180 --seconds 0.2)
    CLI=(--device cpu --size 320x180 --seconds 5); LIVE_LIMIT=150
else
    BENCH=(--device cuda); DISPLAY_SIZE=(--width 3840 --height 2160 --seconds 1)
    CLI=(--device cuda --size 1920x1080 --seconds 20); LIVE_LIMIT=170
fi

export -f setup; export PY
run_step setup 90 20 bash -c setup
run_step env 45 15 "$PY" - <<'PYEOF'
"""What the machine has: GPU, torch/CUDA/cuDNN, ffmpeg and whether its NVENC works, the EGL renderer, /dev/shm."""
import installation  # noqa: F401  first (triton before GL)

import json, os, sys

import torch

from installation.engine.config import cuda_device_count, describe_device, resolve_device
from installation.recording.encoder import nvenc_problem

info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_devices": cuda_device_count(), "device": describe_device(resolve_device("auto")),
        "cpus": os.cpu_count(), "nvenc": nvenc_problem() or "works"}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(capability=f"{props.major}.{props.minor}", total_mib=round(props.total_memory / 2**20),
                cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported())
stats = os.statvfs("/dev/shm")
info["shm_free_mib"] = round(stats.f_bavail * stats.f_frsize / 2**20)
try:
    import moderngl

    ctx = moderngl.create_standalone_context(backend="egl")
    info.update(gl_renderer=ctx.info["GL_RENDERER"], gl_version=ctx.info["GL_VERSION"])
    ctx.release()
except Exception as error:
    info["gl_renderer"] = f"NO EGL CONTEXT ({type(error).__name__}: {str(error)[:200]})"
with open(os.path.join(os.environ["OUT"], "env.json"), "w") as f:
    json.dump(info, f, indent=1)
print(json.dumps(info, indent=1))
PYEOF
smi_start gen_gpu
run_step gen 170 60 "$PY" benchmarks/bench_gpu.py "${BENCH[@]}" --parts gen,step --out "$OUT/gen.json"
smi_stop
smi_start live_gpu
run_step live "$LIVE_LIMIT" 60 "$PY" benchmarks/bench_gpu.py "${BENCH[@]}" --parts live --out "$OUT/live.json" \
    --checkpoint-out "$WORK/stylegan1.pt"
smi_stop
run_step display 40 15 "$PY" benchmarks/bench_display.py "${DISPLAY_SIZE[@]}"
# the live part's checkpoint (1024 px, full width on a GPU), the default preset (grid 3), with ffmpeg: as a gallery runs
[ -f "$WORK/stylegan1.pt" ] && run_step cli 90 45 "$PY" run_installation.py --headless \
    --checkpoint "$WORK/stylegan1.pt" --run-dir "$WORK/cli-run" --no-osc "${CLI[@]}"
[ -f "$WORK/cli-run/status.json" ] && cp "$WORK/cli-run/status.json" "$OUT/cli_status.json"

# last: the measurements are what a GPU session is scarce for
# the tests whose outcome depends on a GPU being there: CUDA paths (skipped without one), device checks, those that
# assumed none (a missing cuda:N, bit-identical resume, GL beside triton), NVENC or its fallback
run_step tests 200 60 "$PY" -m pytest -p no:cacheprovider -q -rfEs tests/test_precision.py \
    tests/test_engine_commands.py tests/test_gl_then_torch.py \
    tests/test_loader.py::test_cli_bad_input_is_one_line_and_exit_2 \
    tests/test_app.py::test_bad_run_options_are_one_line \
    tests/test_engine_journey.py::test_bad_flags_exit_2_with_one_clear_line \
    tests/test_training.py::test_interrupted_and_resumed_run_is_bit_identical \
    tests/test_recording.py::test_h264_falls_back_to_x264_where_nvenc_does_not_work_saying_why_once \
    tests/test_recording.py::test_nvenc_encodes_h264_on_the_gpu

note "summary"
{
    echo "===================================================================================================="
    echo "uncanny GPU check: summary ($(date -u +%Y-%m-%dT%H:%MZ))"
    "$PY" -c 'import json, sys; print(" | ".join(f"{k} {v}" for k, v in json.load(open(sys.argv[1])).items()))' \
        "$OUT/env.json" 2>/dev/null
    echo "steps (name, exit code, seconds, limit):"; sed 's/^/  /' "$OUT/steps.tsv"
    for part in gen live; do
        echo; sed -n '/^uncanny GPU benchmark on/,$p' "$OUT/$part.log" 2>/dev/null
    done
    echo; echo "tests: $(grep -E '[0-9]+ (passed|failed)' "$OUT/tests.log" | tail -n 1)"
    grep -E '^(FAILED|ERROR)' "$OUT/tests.log" | head -n 8
    echo; echo "display (bench_display.py):"; grep -v '^$' "$OUT/display.log" 2>/dev/null | head -n 10
    echo; echo "entry point: $(tail -n 2 "$OUT/cli.log" 2>/dev/null | tr '\n' ' ')"
    "$PY" -c 'import json, sys; s = json.load(open(sys.argv[1]))
print({k: s.get(k) for k in ("phase", "engine_status", "iteration", "engine_restarts", "last_error")})' \
        "$OUT/cli_status.json" 2>/dev/null
    echo "===================================================================================================="
} > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
note "done in $(elapsed)s; files in $OUT"
