#include <pybind11/pybind11.h>
PYBIND11_MODULE(_fused, m) { m.def("ping", []() { return 1; }); }
