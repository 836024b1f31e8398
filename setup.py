"""The native fan-out loop (media/_fanout.c), built where a C compiler, the interpreter's
headers and libsrtp2's are present (scripts/setup installs them as root); elsewhere the
install goes on without it and the relay forwards in Python (media/native.py says which)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "media._fanout",
            ["media/_fanout.c"],
            libraries=["srtp2"],
            extra_compile_args=["-O2", "-Wall"],
            optional=True,
        )
    ]
)
