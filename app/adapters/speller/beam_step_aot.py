"""Compile the speller's beam step ahead of time: beam_kernels.py's functions, for the signatures it lists, into
an extension module (`_beam_step_aot`) that needs neither numba nor LLVM to run, so that the CPU image carries
neither (docker/Dockerfile). Needs numba and C and C++ compilers (pycc checks for both), at build time only.

    python -m app.adapters.speller.beam_step_aot [--output-dir DIR] [--target-cpu NAME]

numba's ahead-of-time compiler (numba.pycc) is pending deprecation since numba 0.57, with a replacement
announced but not yet released: it still builds and runs on the numba this project installs.
"""

from __future__ import annotations

import argparse
import sysconfig
import warnings
from pathlib import Path

from app.adapters.speller import beam_kernels
from app.adapters.speller.beam_step import AOT_MODULE, KERNELS, source_digest


def compilers_work() -> bool:
    """Whether the C and C++ compilers that numba's pycc checks for (and builds with) are there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumbaPendingDeprecationWarning, said above
        from numba.pycc.platform import external_compiler_works

    return external_compiler_works()


def build(output_dir: Path, target_cpu: str = "") -> Path:
    """Write the extension module into `output_dir` (put it beside beam_kernels.py to serve it); returns its path.
    `target_cpu` "" compiles for any CPU of the build machine's architecture; "host" for the build machine's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumbaPendingDeprecationWarning, said above
        import numba.pycc.compiler
        from llvmlite import ir
        from numba.core import cgutils
        from numba.core.pythonapi import PythonAPI
        from numba.pycc import CC

    digest = source_digest()
    cc = CC(AOT_MODULE.rsplit(".", 1)[1])
    cc.output_dir = str(output_dir)
    cc.target_cpu = target_cpu
    cc.verbose = False
    for name in KERNELS:
        cc.export(name, beam_kernels.SIGNATURES[name])(getattr(beam_kernels, name).py_func)
    cc.export("source_digest", "int64()")(lambda: digest)
    # Two of pycc's defaults differ from the JIT's, at a cost the step would pay at every call; both are set for
    # this build only. Its wrappers hold the GIL: the step must release it as the JIT's (nogil=True) does, so
    # that the event loop keeps answering while a step runs. And its wrappers unpickle the class of every array
    # they return at every call (numba's own runtime keeps what it unpickled): ~2 µs an array, 8 a step.
    compile_extra, unserialize = numba.pycc.compiler.compile_extra, PythonAPI.unserialize

    def releasing_the_gil(typingctx, targetctx, func, args, return_type, flags, **kws):  # type: ignore[no-untyped-def]
        flags.release_gil = True
        return compile_extra(typingctx, targetctx, func, args, return_type, flags, **kws)

    def unpickled_once(api: PythonAPI, structptr: ir.Value) -> ir.Value:
        if not isinstance(structptr, ir.GlobalVariable):  # not a constant of serialize_object
            return unserialize(api, structptr)
        name = f"{structptr.name}.unpickled"
        try:
            kept = api.module.get_global(name)
        except KeyError:
            kept = ir.GlobalVariable(api.module, api.pyobj, name=name)
            kept.linkage, kept.initializer = "internal", ir.Constant(api.pyobj, None)
        with api.builder.if_then(cgutils.is_null(api.builder, api.builder.load(kept)), likely=False):
            api.builder.store(unserialize(api, structptr), kept)  # still NULL on an error: unpickled next time
        obj = api.builder.load(kept)
        api.incref(obj)  # a new reference, as unserialize returns (the GIL is held: wrappers box with it)
        return obj

    numba.pycc.compiler.compile_extra, PythonAPI.unserialize = releasing_the_gil, unpickled_once
    try:
        cc.compile()
    finally:
        numba.pycc.compiler.compile_extra, PythonAPI.unserialize = compile_extra, unserialize
    return Path(output_dir) / f"{cc.name}{sysconfig.get_config_var('EXT_SUFFIX')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path(beam_kernels.__file__).parent)
    parser.add_argument("--target-cpu", default="", help='"" (default): any CPU of the architecture; "host": this one')
    args = parser.parse_args()
    print(build(args.output_dir, args.target_cpu))


if __name__ == "__main__":
    main()
