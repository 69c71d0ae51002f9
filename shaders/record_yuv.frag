#version 330 core
// A live recording's picture as ffmpeg's planar yuv420p (BT.709, limited range), so ffmpeg converts nothing and
// the readback carries half the bytes of RGB. The target is one R8 texture u_size.x wide and u_size.y * 3 / 2
// high; read back bottom row first, its bytes are in ffmpeg's order: the Y plane (top picture row first: the
// flip is done here), then U, then V. Each texture row past the Y plane holds two chroma rows (each half as
// wide), so no division is needed (integer division is slow on llvmpipe). A chroma sample is the mean of its
// 2 x 2 picture pixels: one bilinear fetch at their shared corner (the source is filtered linearly).
// u_size is the file's (even) size; u_source the picture, whose top left u_size pixels are recorded.

uniform sampler2D u_source;
uniform ivec2 u_size;

out float byte_out;

vec3 rgb(vec2 from_top_left) {  // the source at a point in pixels counted from its top left corner
    vec2 source = vec2(textureSize(u_source, 0));
    return texture(u_source, vec2(from_top_left.x, source.y - from_top_left.y) / source).rgb;
}

void main() {
    vec2 pixel = floor(gl_FragCoord.xy);
    float height = float(u_size.y);
    if (pixel.y < height) {  // one texel, unfiltered
        vec3 c = texelFetch(u_source, ivec2(gl_FragCoord.x, textureSize(u_source, 0).y - 1 - int(pixel.y)), 0).rgb;
        byte_out = (16.0 + 219.0 * dot(c, vec3(0.2126, 0.7152, 0.0722))) / 255.0;
        return;
    }
    float half_width = float(u_size.x / 2);
    float second = pixel.x >= half_width ? 1.0 : 0.0;  // the second chroma row held by this texture row
    vec2 sample = vec2(pixel.x - second * half_width, 2.0 * (pixel.y - height) + second);
    bool is_v = sample.y >= 0.5 * height;  // past the U plane's height / 2 rows
    sample.y -= is_v ? 0.5 * height : 0.0;
    vec3 c = rgb(2.0 * sample + 1.0);  // the corner shared by pixels 2x..2x+1, 2y..2y+1
    // BT.709: Cb = (B - Y) / 1.8556, Cr = (R - Y) / 1.5748, scaled to 16..240 around 128
    float value = is_v ? dot(c, vec3(0.5, -0.4542, -0.0458)) : dot(c, vec3(-0.1146, -0.3854, 0.5));
    byte_out = (128.0 + 224.0 * value) / 255.0;
}
