#version 330 core
// The HUD: a text box rasterised on the CPU (straight alpha) drawn over the picture. The caller limits drawing
// to the box with the scissor test and blends with SRC_ALPHA, ONE_MINUS_SRC_ALPHA.

uniform sampler2D u_text;
uniform vec4 u_box;       // x, y, width, height in pixels, y counted from the top
uniform float u_height;   // viewport height

out vec4 colour;

void main() {
    vec2 pixel = vec2(gl_FragCoord.x, u_height - gl_FragCoord.y);
    colour = texture(u_text, (pixel - u_box.xy) / u_box.zw);
}
