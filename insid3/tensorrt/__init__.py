"""insid3.tensorrt: the one TensorRT stack, shared by the export and the runtime.

Torch-free and neutral: `insid3.export` (its engine build and parity check) and
`insid3.engine` (the `tensorrt` backend) both import from here, never from each other.

- `versions`: the minimum TensorRT, the version parser, whether TensorRT can run here, the GPU's name;
- `engine_files`: how engine and timing-cache files are named, and which engine fits this GPU;
- `loader`: deserialise an engine file;
- `runner`: run it on CuPy device buffers that persist between calls.

tensorrt and cupy are imported only inside the functions that need them, so everything here
imports on a machine without a GPU (and the pure logic is unit-tested there).
"""
