/*
 * Prints the structure offsets pytrace needs for the CPython whose headers this file is
 * compiled against (x86_64 Linux, default build), as lines ready to paste into a
 * `VersionLayout` in pyspy-user/src/python/layout.rs.
 *
 * Build: see gen.sh (needs -DPy_BUILD_CORE and, for 3.7+, the internal/ headers).
 */
#include <Python.h>
#include <frameobject.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#if PY_VERSION_HEX >= 0x030D0000
#  include "internal/pycore_runtime.h"
#  include "internal/pycore_interp.h"
#  include "internal/pycore_frame.h"
#  include "internal/pycore_gc.h"
#elif PY_VERSION_HEX >= 0x030B0000
#  include "internal/pycore_runtime.h"
#  include "internal/pycore_interp.h"
#  include "internal/pycore_frame.h"
#elif PY_VERSION_HEX >= 0x03090000
#  include "internal/pycore_runtime.h"
#  include "internal/pycore_interp.h"
#elif PY_VERSION_HEX >= 0x03080000
#  include "internal/pycore_pystate.h"
#elif PY_VERSION_HEX >= 0x03070000
#  include "internal/pystate.h"
#endif

#define NONE ((size_t)-1)

static void field(const char *name, size_t value)
{
    if (value == NONE)
        printf("        %s: NO_OFFSET,\n", name);
    else
        printf("        %s: %zu,\n", name, value);
}

int main(void)
{
    printf("    // CPython %s (PY_VERSION_HEX 0x%08lx), from its installed headers\n",
           PY_VERSION, (unsigned long)PY_VERSION_HEX);
    printf("    major: %d,\n", PY_MAJOR_VERSION);
    printf("    minor: %d,\n", PY_MINOR_VERSION);

#if PY_VERSION_HEX >= 0x03070000
    printf("    runtime_interp_head: Some(%zu),\n",
           offsetof(_PyRuntimeState, interpreters.head));
#else
    printf("    runtime_interp_head: None,\n");
#endif

    printf("    offsets: PyOffsets {\n");

    /* PyInterpreterState */
#if PY_VERSION_HEX >= 0x030B0000
    field("interp_threads_head", offsetof(PyInterpreterState, threads.head));
#else
    field("interp_threads_head", offsetof(PyInterpreterState, tstate_head));
#endif
#if PY_VERSION_HEX >= 0x030A0000
    /* faulthandler tests tstate->interp->gc.collecting from 3.10 on. */
    field("interp_gc_collecting", offsetof(PyInterpreterState, gc.collecting));
#else
    field("interp_gc_collecting", NONE);
#endif
    field("interp_next", offsetof(PyInterpreterState, next));

    /* PyThreadState */
    field("tstate_next", offsetof(PyThreadState, next));
    field("tstate_thread_id", offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030B0000
    /* threading.get_native_id() exists from 3.8, but the thread state stores it only
       from 3.11 on. */
    field("tstate_native_thread_id", offsetof(PyThreadState, native_thread_id));
#else
    field("tstate_native_thread_id", NONE);
#endif
#if PY_VERSION_HEX >= 0x030C0000
    /* `_status`: its `bound_gilstate` bit marks the thread state PyGILState_GetThisThreadState()
       returns in the thread it is bound to. */
    field("tstate_status", offsetof(PyThreadState, _status));
#else
    field("tstate_status", NONE);
#endif
#if PY_VERSION_HEX >= 0x030D0000
    field("tstate_frame", offsetof(PyThreadState, current_frame));
    field("cframe_current_frame", NONE);
#elif PY_VERSION_HEX >= 0x030B0000
    field("tstate_frame", offsetof(PyThreadState, cframe));
    field("cframe_current_frame", offsetof(_PyCFrame, current_frame));
#else
    field("tstate_frame", offsetof(PyThreadState, frame));
    field("cframe_current_frame", NONE);
#endif

    /* Frames: PyFrameObject up to 3.10, _PyInterpreterFrame from 3.11. */
#if PY_VERSION_HEX >= 0x030B0000
    field("frame_previous", offsetof(_PyInterpreterFrame, previous));
#  if PY_VERSION_HEX >= 0x030D0000
    field("frame_code", offsetof(_PyInterpreterFrame, f_executable));
    field("frame_instr", offsetof(_PyInterpreterFrame, instr_ptr));
#  else
    field("frame_code", offsetof(_PyInterpreterFrame, f_code));
    field("frame_instr", offsetof(_PyInterpreterFrame, prev_instr));
#  endif
#else
    field("frame_previous", offsetof(PyFrameObject, f_back));
    field("frame_code", offsetof(PyFrameObject, f_code));
    field("frame_instr", offsetof(PyFrameObject, f_lasti));
#endif
#if PY_VERSION_HEX >= 0x030C0000
    field("frame_owner", offsetof(_PyInterpreterFrame, owner));
    field("frame_owner_shim_min", (size_t)FRAME_OWNED_BY_CSTACK);
#else
    field("frame_owner", NONE);
    field("frame_owner_shim_min", NONE);
#endif

    /* PyCodeObject */
    field("code_filename", offsetof(PyCodeObject, co_filename));
    field("code_name", offsetof(PyCodeObject, co_name));
#if PY_VERSION_HEX >= 0x030A0000
    field("code_linetable", offsetof(PyCodeObject, co_linetable));
#else
    field("code_linetable", offsetof(PyCodeObject, co_lnotab));
#endif
    field("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));

    /* str and bytes */
    field("unicode_length", offsetof(PyASCIIObject, length));
    field("unicode_state", offsetof(PyASCIIObject, state));
    field("unicode_ascii_data", sizeof(PyASCIIObject));
    field("unicode_compact_data", sizeof(PyCompactUnicodeObject));
    field("bytes_size", offsetof(PyBytesObject, ob_base.ob_size));
    field("bytes_data", offsetof(PyBytesObject, ob_sval));
#ifdef Py_GIL_DISABLED
    field("unicode_state_shift", 6);
#else
    field("unicode_state_shift", 0);
#endif
#if PY_VERSION_HEX >= 0x030C0000
    /* A serial number given to each code object as it is made. */
    field("code_version", offsetof(PyCodeObject, co_version));
#else
    field("code_version", NONE);
#endif
    printf("    },\n");

#if PY_VERSION_HEX >= 0x030B0000
    printf("    instr: InstrKind::InstrPtr { code_adaptive: %zu },\n",
           offsetof(PyCodeObject, co_code_adaptive));
    printf("    line_table: LineTableKind::Locations311,\n");
#elif PY_VERSION_HEX >= 0x030A0000
    printf("    instr: InstrKind::LastiCodeUnits,\n");
    printf("    line_table: LineTableKind::Linetable310,\n");
#else
    printf("    instr: InstrKind::LastiBytes,\n");
    printf("    line_table: LineTableKind::Lnotab,\n");
#endif

#if PY_VERSION_HEX >= 0x030C0000
    {
        /* The `bound_gilstate` bit of `_status`, as the u32 the walker reads. */
        PyThreadState probe;
        unsigned int word = 0;
        memset(&probe, 0, sizeof probe);
        probe._status.bound_gilstate = 1;
        memcpy(&word, &probe._status, sizeof word);
        printf("    gilstate_bound_mask: Some(%u),\n", word);
    }
#else
    printf("    gilstate_bound_mask: None,\n");
#endif

#if PY_VERSION_HEX >= 0x030D0000
    /* Not part of VersionLayout: where the 3.13+ debug offsets say these live. */
    printf("    // debug offsets: sizeof(_Py_DebugOffsets) = %zu, "
           "offsetof(_PyRuntimeState, debug_offsets) = %zu\n",
           sizeof(_Py_DebugOffsets), offsetof(_PyRuntimeState, debug_offsets));
#endif
    return 0;
}
