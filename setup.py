"""Build hook for the one compiled part: the OTLP protobuf reader (collectors/_wire.c).

It is optional: without a C compiler the install still succeeds and the collector decodes
with the protobuf runtime alone (slower, same results). Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collectors._wire",
            sources=["collectors/_wire.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
