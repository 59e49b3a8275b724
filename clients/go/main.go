// Command aegis-embed-example calls aegis.embed.v1.EmbedService with Go stubs generated from
// protos/ (see docs/polyglot.md). It prints the space, one query vector as JSON, int8 bytes
// of a document, and the status code of a request with an empty input.
//
//	go run . -target 127.0.0.1:50051 "what is a cat?"
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"time"

	embedv1 "github.com/aegis-serve/aegis-serve/gen/go/aegis/embed/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	target := flag.String("target", "127.0.0.1:50051", "gateway host:port")
	caFile := flag.String("ca", "", "PEM CA file: use TLS (default plaintext)")
	token := flag.String("token", "", "bearer token sent as authorization metadata")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of each call")
	flag.Parse()
	text := "what is a cat?"
	if flag.NArg() > 0 {
		text = flag.Arg(0)
	}

	opts := []grpc.DialOption{grpc.WithInsecure()}
	if *caFile != "" {
		creds, err := credentials.NewClientTLSFromFile(*caFile, "")
		if err != nil {
			fail("tls: %v", err)
		}
		opts = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	}
	conn, err := grpc.Dial(*target, opts...)
	if err != nil {
		fail("dial %s: %v", *target, err)
	}
	defer conn.Close()
	client := embedv1.NewEmbedServiceClient(conn)

	call := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		if *token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*token)
		}
		return ctx, cancel
	}

	ctx, cancel := call()
	info, err := client.GetInfo(ctx, &embedv1.GetInfoRequest{})
	cancel()
	if err != nil {
		fail("GetInfo: %v", err)
	}
	fmt.Printf("space %s dimensions %d serving %v\n", info.GetSpaceId(), info.GetDimensions(), info.GetServing())

	ctx, cancel = call()
	resp, err := client.Embed(ctx, &embedv1.EmbedRequest{
		Inputs:    []string{text},
		InputType: embedv1.InputType_INPUT_TYPE_QUERY,
	})
	cancel()
	if err != nil {
		fail("Embed query: %v", err)
	}
	values := resp.GetEmbeddings()[0].GetValues()
	norm := 0.0
	for _, v := range values {
		norm += float64(v) * float64(v)
	}
	vec, _ := json.Marshal(values)
	fmt.Printf("query encoder=%s dimensions=%d norm=%.6f\n", resp.GetEncoder(), resp.GetDimensions(), math.Sqrt(norm))
	fmt.Printf("vector %s\n", vec)

	ctx, cancel = call()
	q, err := client.Embed(ctx, &embedv1.EmbedRequest{
		Inputs:    []string{text},
		InputType: embedv1.InputType_INPUT_TYPE_DOCUMENT,
		Encoding:  embedv1.Encoding_ENCODING_INT8,
	})
	cancel()
	if err != nil {
		fail("Embed int8: %v", err)
	}
	data := q.GetEmbeddings()[0].GetData()
	ints := make([]int, len(data))
	for i, b := range data {
		ints[i] = int(int8(b))
	}
	i8, _ := json.Marshal(ints)
	fmt.Printf("int8 %s\n", i8)

	ctx, cancel = call()
	_, err = client.Embed(ctx, &embedv1.EmbedRequest{Inputs: []string{""}, InputType: embedv1.InputType_INPUT_TYPE_QUERY})
	cancel()
	st, _ := status.FromError(err)
	fmt.Printf("empty input -> %s (%d): %s\n", st.Code(), st.Code(), st.Message())
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
