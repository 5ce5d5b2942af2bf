module github.com/shopmesh/shopmesh/tools/protoprint

go 1.25.0

require (
	github.com/jhump/protoreflect v1.19.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/golang/protobuf v1.5.4 // indirect
	github.com/jhump/protoreflect/v2 v2.0.0-beta.1 // indirect
)
