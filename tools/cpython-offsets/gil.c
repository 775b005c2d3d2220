/* Prints where one CPython version (3.7-3.12) keeps its GIL, for pyspy-user/src/python/gil.rs:
 * the offset of `ceval.gil` in `_PyRuntimeState` (3.7-3.11) or in `PyInterpreterState`
 * (3.12, a pointer), and `last_holder` / `locked` inside `struct _gil_runtime_state`.
 *
 *   inc=$(echo ~/.pyenv/versions/3.11.7/include/python3.11)
 *   cc -std=gnu11 -w -DPy_BUILD_CORE -I$inc -I$inc/internal -o gil gil.c && ./gil
 *
 * 3.13+ describe their GIL in _Py_DebugOffsets; 3.6 keeps it in static variables. */
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#if PY_VERSION_HEX >= 0x03090000
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#elif PY_VERSION_HEX >= 0x03080000
#include "internal/pycore_pystate.h"
#else
#include "internal/pystate.h"
#endif
#if PY_VERSION_HEX >= 0x030C0000
#include "internal/pycore_gil.h"
#endif
int main(void) {
#if PY_VERSION_HEX >= 0x030C0000
    printf("interp_ceval_gil=%zu\n", offsetof(PyInterpreterState, ceval.gil));
    printf("last_holder=%zu locked=%zu\n", offsetof(struct _gil_runtime_state, last_holder), offsetof(struct _gil_runtime_state, locked));
#else
    printf("runtime_gil=%zu\n", offsetof(_PyRuntimeState, ceval.gil));
    printf("last_holder=%zu locked=%zu\n", offsetof(struct _gil_runtime_state, last_holder), offsetof(struct _gil_runtime_state, locked));
#endif
    return 0;
}
