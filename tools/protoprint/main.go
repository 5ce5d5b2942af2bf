// Command protoprint turns a FileDescriptorSet (stdin) back into .proto source files.
//
// The protovalidate wheel on PyPI ships buf/validate/validate.proto only as a compiled
// descriptor, and the Buf Schema Registry is not reachable here, so `make gen` rebuilds the
// source from that descriptor (tools/vendor_protos.py) for buf and protoc to import.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/desc/protoprint"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: protoprint OUT_DIR FILE.proto... < descriptor_set.binpb")
		os.Exit(2)
	}
	outDir := os.Args[1]
	raw, err := io.ReadAll(os.Stdin)
	check(err)
	var set descriptorpb.FileDescriptorSet
	check(proto.Unmarshal(raw, &set))
	files, err := desc.CreateFileDescriptorsFromSet(&set)
	check(err)
	printer := &protoprint.Printer{Compact: false, SortElements: false}
	for _, name := range os.Args[2:] {
		fd, ok := files[name]
		if !ok {
			check(fmt.Errorf("%s is not in the descriptor set", name))
		}
		path := filepath.Join(outDir, name)
		check(os.MkdirAll(filepath.Dir(path), 0o755))
		f, err := os.Create(path)
		check(err)
		check(printer.PrintProtoFile(fd, f))
		check(f.Close())
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "protoprint:", err)
		os.Exit(1)
	}
}
