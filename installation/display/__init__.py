"""The display side: GLSL shaders, the presenter, a GLFW window, headless EGL rendering and video files."""
