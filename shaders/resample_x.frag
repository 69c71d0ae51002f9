#version 330 core
// Pass 1 of drawing the picture: cross-fade the previous and current mosaics and resample their rows
// horizontally to the on-screen width with the Catmull-Rom bicubic kernel. The mosaic is `u_grid` cells, one
// texture-array layer each (1 x 1 for the single view, N x N walks for the population view). Output texel (x, r)
// is mosaic source row r (top row first; cell row r / H) at screen column x of the visible part of the mosaic.
// Splitting the 4 x 4 filter into two passes of 4 taps is what keeps bicubic affordable on a software rasteriser,
// and the fade is done here, on the few source rows, because filtering is linear.

uniform sampler2DArray u_current;
uniform sampler2DArray u_previous;
uniform float u_mix;     // 0 shows the previous mosaic, 1 the current one
uniform vec2 u_span;     // mosaic left edge relative to this texture's column 0, and mosaic width, in pixels
uniform ivec2 u_grid;    // columns, rows
uniform int u_count;     // frames in the mosaic; the last row may be short

out vec4 colour;

vec4 catmull_rom(float f) {
    return vec4(f * (-0.5 + f * (1.0 - 0.5 * f)), 1.0 + f * f * (-2.5 + 1.5 * f),
                f * (0.5 + f * (2.0 - 1.5 * f)), f * f * (-0.5 + 0.5 * f));
}

vec3 resample(sampler2DArray frames, float u, int row, int layer) {
    int width = textureSize(frames, 0).x;
    float position = u * float(width) - 0.5;  // in texels, from the first texel's centre
    int first = int(floor(position)) - 1;
    vec4 weight = catmull_rom(fract(position));
    vec3 sum = vec3(0.0);
    for (int i = 0; i < 4; i++) {  // clamp-to-edge by hand: texelFetch does no wrapping
        sum += texelFetch(frames, ivec3(clamp(first + i, 0, width - 1), row, layer), 0).rgb * weight[i];
    }
    return sum;
}

void main() {
    int height = textureSize(u_current, 0).y;
    float cells = (gl_FragCoord.x - u_span.x) / u_span.y * float(u_grid.x);
    int column = clamp(int(cells), 0, u_grid.x - 1);
    int mosaic_row = int(gl_FragCoord.y);
    int layer = min(mosaic_row / height * u_grid.x + column, u_count - 1);  // pass 2 letterboxes empty cells
    int row = mosaic_row % height;
    float u = cells - float(column);
    vec3 rgb = resample(u_current, u, row, layer);
    if (u_mix < 1.0) {  // the same for every pixel, so the second filter costs nothing once the fade is over
        rgb = mix(resample(u_previous, u, row, layer), rgb, u_mix);
    }
    colour = vec4(rgb, 1.0);  // stored in 8 bits between the passes (overshoot clipped, as in Pillow)
}
