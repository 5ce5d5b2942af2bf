"""Copy the third-party .proto files the schemas import into schemas/vendor/.

The Buf Schema Registry is not reachable, so `make gen` takes them from the Python wheels
instead. The output is committed like gen/ (and checked fresh by `make lint`): `buf lint`
and `buf breaking --against '.git#branch=main'` must work in a fresh clone, before any
`make gen`, and a git ref only holds what was committed. Sources:
- google/api/*.proto: the googleapis-common-protos wheel ships them as .proto source.
- buf/validate/validate.proto: the protovalidate wheel ships only its compiled descriptor,
  so we rebuild the source from it with tools/protoprint (jhump/protoreflect's printer).
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "schemas" / "vendor"
PROTOPRINT = ROOT / ".build" / "bin" / "protoprint"
GOOGLEAPIS_FILES = ("google/api/annotations.proto", "google/api/http.proto")


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"vendor_protos: package {module} is not installed (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations)))


def vendor_googleapis() -> None:
    site = _package_dir("google.api").parent.parent
    for name in GOOGLEAPIS_FILES:
        dest = OUT / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(site / name, dest)


def _validate_descriptor() -> bytes:
    """The serialized FileDescriptorProto of buf/validate/validate.proto from the wheel.

    Read from the generated module's source (the first argument of its file_desc call)
    rather than imported, so it does not depend on that module's runtime internals.
    """
    source = (_package_dir("protovalidate") / "_gen/buf/validate/validate_pb.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "file_desc"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            return node.args[0].value
    sys.exit("vendor_protos: no file descriptor found in protovalidate's validate_pb.py")


def build_protoprint() -> None:
    if PROTOPRINT.exists():
        return
    PROTOPRINT.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["go", "build", "-o", str(PROTOPRINT), "."],
        cwd=ROOT / "tools" / "protoprint",
        check=True,
    )


def vendor_protovalidate() -> None:
    build_protoprint()
    fds = descriptor_pb2.FileDescriptorSet()
    for module in (descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2):
        fds.file.add().ParseFromString(module.DESCRIPTOR.serialized_pb)
    fds.file.add().ParseFromString(_validate_descriptor())
    subprocess.run(
        [str(PROTOPRINT), str(OUT), "buf/validate/validate.proto"],
        input=fds.SerializeToString(),
        check=True,
    )


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    vendor_googleapis()
    vendor_protovalidate()
    print(f"vendored third-party protos into {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
