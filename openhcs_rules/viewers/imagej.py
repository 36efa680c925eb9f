"""ImageJ through scyjava/JPype: find the jar, start the JVM, move pixels between numpy and ImageJ.

Works with ImageJ 1.x alone (Debian's ``imagej`` package, ``/usr/share/java/ij.jar``) or the ``ij-*.jar``
of a user's Fiji install (``FIJI_HOME`` or ``OPENHCS_IJ_JAR``). scyjava is told never to download a JDK:
the system Java is used. The JVM does not always exit on its own (AWT threads), so :func:`exit_jvm` ends
the process explicitly once the viewer has cleaned up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: numpy dtype -> ImageJ bit depth; everything else is shown as 32-bit float
BIT_DEPTHS = {"uint8": 8, "uint16": 16}


def find_ij_jar() -> Path:
    """The ImageJ 1.x jar to load, or a FileNotFoundError that says how to provide one."""
    candidates: list[Path] = []
    if os.environ.get("OPENHCS_IJ_JAR"):
        candidates.append(Path(os.environ["OPENHCS_IJ_JAR"]))
    if os.environ.get("FIJI_HOME"):
        candidates += sorted(Path(os.environ["FIJI_HOME"], "jars").glob("ij-*.jar"), reverse=True)
    candidates.append(Path("/usr/share/java/ij.jar"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "no ImageJ jar found: install Debian's `imagej` package, set FIJI_HOME to a Fiji.app folder, "
        "or OPENHCS_IJ_JAR to an ij.jar"
    )


def start_jvm(headless: bool = False) -> None:
    """Start the JVM with ImageJ on the class path (once per process)."""
    import scyjava

    if scyjava.jvm_started():
        return
    scyjava.config.set_java_constraints(fetch="never")
    scyjava.config.add_classpath(str(find_ij_jar()))
    scyjava.config.add_option(f"-Djava.awt.headless={'true' if headless else 'false'}")
    scyjava.start_jvm()


def jclass(name: str) -> Any:
    import scyjava

    return scyjava.jimport(name)


def bit_depth(dtype: str) -> int:
    return BIT_DEPTHS.get(dtype, 32)


def to_processor(array: np.ndarray, depth: int) -> Any:
    """An ImageJ ImageProcessor holding a copy of a 2D array, converted to ``depth`` bits."""
    import jpype

    height, width = array.shape
    if depth == 8:
        pixels = jpype.JArray(jpype.JByte)(array.size)
        pixels[:] = np.ascontiguousarray(array, dtype=np.uint8).reshape(-1).view(np.int8)
        return jclass("ij.process.ByteProcessor")(width, height, pixels, None)
    if depth == 16:
        pixels = jpype.JArray(jpype.JShort)(array.size)
        pixels[:] = np.ascontiguousarray(array, dtype=np.uint16).reshape(-1).view(np.int16)
        return jclass("ij.process.ShortProcessor")(width, height, pixels, None)
    pixels = jpype.JArray(jpype.JFloat)(array.size)
    pixels[:] = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
    return jclass("ij.process.FloatProcessor")(width, height, pixels, None)


def from_processor(processor: Any) -> np.ndarray:
    """The pixels ImageJ holds in a processor, as numpy (8/16-bit read back unsigned)."""
    pixels = np.asarray(processor.getPixels())
    unsigned: dict[int, np.ndarray] = {1: pixels.view(np.uint8), 2: pixels.view(np.uint16)}
    pixels = unsigned.get(pixels.dtype.itemsize, pixels)
    return pixels.reshape(processor.getHeight(), processor.getWidth()).copy()


def run_macro(code: str) -> tuple[str | None, str | None]:
    """Run ImageJ macro code; returns (result, error). Errors are returned, never shown in a dialog
    (a modal error dialog would block the viewer's main loop)."""
    interpreter = jclass("ij.macro.Interpreter")()
    interpreter.setIgnoreErrors(True)
    result = interpreter.run(code, "")
    error = interpreter.getErrorMessage()  # set even when wasError() is false under setIgnoreErrors
    return (None if result is None else str(result)), (str(error) if error else None)


def exit_jvm(status: int = 0) -> None:
    """End the process through the JVM (AWT threads can otherwise keep it alive); no-op without a JVM."""
    import scyjava

    if scyjava.jvm_started():
        jclass("java.lang.System").exit(status)
