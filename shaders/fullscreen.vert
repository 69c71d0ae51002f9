#version 330 core
// One triangle that covers the whole viewport, with no vertex buffer: vertex ids 0, 1, 2 become
// (-1, -1), (3, -1), (-1, 3). Fragment shaders work in pixels from gl_FragCoord, so nothing is passed on.
void main() {
    vec2 corner = vec2((gl_VertexID & 1) * 4 - 1, (gl_VertexID >> 1) * 4 - 1);
    gl_Position = vec4(corner, 0.0, 1.0);
}
