#version 330 core
// A live recording at a size other than the output's: the presented picture (copied into u_source) scaled into
// the viewport with bilinear filtering. The caller sets the viewport to the fitted rectangle.

uniform sampler2D u_source;
uniform vec4 u_rect;      // x, y, width, height of the viewport in pixels, y from the bottom (as GL counts)

out vec4 colour;

void main() {
    colour = vec4(texture(u_source, (gl_FragCoord.xy - u_rect.xy) / u_rect.zw).rgb, 1.0);
}
