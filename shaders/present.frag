#version 330 core
// Pass 2 of drawing the picture: resample pass 1's rows vertically with the Catmull-Rom bicubic kernel and place
// the mosaic in the rectangle `u_rect` (inside the viewport for fit, overhanging it for fill, equal to it for
// stretch). The caller clears to the letterbox colour and sets the viewport to the visible part of the mosaic;
// empty grid cells get the letterbox colour here.

uniform sampler2D u_rows;   // pass 1's output: mosaic source rows at screen width
uniform vec4 u_rect;        // x, y, width, height of the mosaic in pixels, y counted from the top
uniform ivec2 u_grid;       // columns, rows
uniform int u_count;        // frames in the mosaic
uniform int u_x0;           // screen column of u_rows' column 0
uniform int u_cell_rows;    // source rows per cell
uniform float u_height;     // viewport height: gl_FragCoord counts from the bottom, frames are stored top row first
uniform vec3 u_letterbox;
uniform float u_gain;       // 1 - the blackout level: 0 is a black screen

out vec4 colour;

vec4 catmull_rom(float f) {
    return vec4(f * (-0.5 + f * (1.0 - 0.5 * f)), 1.0 + f * f * (-2.5 + 1.5 * f),
                f * (0.5 + f * (2.0 - 1.5 * f)), f * f * (-0.5 + 0.5 * f));
}

void main() {
    vec2 pixel = vec2(gl_FragCoord.x, u_height - gl_FragCoord.y);
    vec2 cells = (pixel - u_rect.xy) / u_rect.zw * vec2(u_grid);
    ivec2 cell = ivec2(floor(cells));
    bool outside = any(lessThan(cells, vec2(0.0))) || any(greaterThanEqual(cell, u_grid));
    if (outside || cell.y * u_grid.x + cell.x >= u_count) {
        colour = vec4(u_letterbox * u_gain, 1.0);
        return;
    }
    float position = (cells.y - float(cell.y)) * float(u_cell_rows) - 0.5;
    int first = int(floor(position)) - 1;
    vec4 weight = catmull_rom(fract(position));
    int column = int(gl_FragCoord.x) - u_x0;
    vec3 sum = vec3(0.0);
    for (int i = 0; i < 4; i++) {  // clamp to the cell's own rows, as pass 1 clamps to its columns
        int row = cell.y * u_cell_rows + clamp(first + i, 0, u_cell_rows - 1);
        sum += texelFetch(u_rows, ivec2(column, row), 0).rgb * weight[i];
    }
    colour = vec4(clamp(sum, 0.0, 1.0) * u_gain, 1.0);  // Catmull-Rom overshoots at hard edges
}
