// Calls aegis.embed.v1.EmbedService with Java stubs generated from protos/ (docs/polyglot.md).
// Prints the space, one query vector, int8 bytes of a document, and the status of an empty input.
//
//   java -cp <stubs+grpc jars> dev.aegis.examples.EmbedExample 127.0.0.1:50051 "what is a cat?"
package dev.aegis.examples;

import dev.aegis.embed.v1.EmbedRequest;
import dev.aegis.embed.v1.EmbedResponse;
import dev.aegis.embed.v1.EmbedServiceGrpc;
import dev.aegis.embed.v1.Encoding;
import dev.aegis.embed.v1.GetInfoRequest;
import dev.aegis.embed.v1.GetInfoResponse;
import dev.aegis.embed.v1.InputType;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.util.StringJoiner;
import java.util.concurrent.TimeUnit;

public final class EmbedExample {
  private EmbedExample() {}

  public static void main(String[] args) throws Exception {
    String target = args.length > 0 ? args[0] : "127.0.0.1:50051";
    String text = args.length > 1 ? args[1] : "what is a cat?";
    String token = System.getenv("AEGIS_TOKEN");

    // Plaintext here; for TLS use ManagedChannelBuilder.forTarget(target).useTransportSecurity()
    // (or NettyChannelBuilder with GrpcSslContexts.forClient().trustManager(caFile)).
    ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    try {
      EmbedServiceGrpc.EmbedServiceBlockingStub stub = EmbedServiceGrpc.newBlockingStub(channel);
      if (token != null && !token.isEmpty()) {
        Metadata md = new Metadata();
        md.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
        stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md));
      }

      GetInfoResponse info =
          stub.withDeadlineAfter(30, TimeUnit.SECONDS).getInfo(GetInfoRequest.getDefaultInstance());
      System.out.printf(
          "space %s dimensions %d serving %b%n",
          info.getSpaceId(), info.getDimensions(), info.getServing());

      EmbedResponse query =
          stub.withDeadlineAfter(30, TimeUnit.SECONDS)
              .embed(
                  EmbedRequest.newBuilder()
                      .addInputs(text)
                      .setInputType(InputType.INPUT_TYPE_QUERY)
                      .build());
      double norm = 0;
      StringJoiner vec = new StringJoiner(",", "[", "]");
      for (float v : query.getEmbeddings(0).getValuesList()) {
        norm += (double) v * v;
        vec.add(Float.toString(v));
      }
      System.out.printf(
          "query encoder=%s dimensions=%d norm=%.6f%n",
          query.getEncoder(), query.getDimensions(), Math.sqrt(norm));
      System.out.println("vector " + vec);

      EmbedResponse doc =
          stub.withDeadlineAfter(30, TimeUnit.SECONDS)
              .embed(
                  EmbedRequest.newBuilder()
                      .addInputs(text)
                      .setInputType(InputType.INPUT_TYPE_DOCUMENT)
                      .setEncoding(Encoding.ENCODING_INT8)
                      .build());
      StringJoiner i8 = new StringJoiner(",", "[", "]");
      for (byte b : doc.getEmbeddings(0).getData().toByteArray()) {
        i8.add(Integer.toString(b)); // Java bytes are signed: exactly int8
      }
      System.out.println("int8 " + i8);

      try {
        stub.withDeadlineAfter(30, TimeUnit.SECONDS)
            .embed(
                EmbedRequest.newBuilder()
                    .addInputs("")
                    .setInputType(InputType.INPUT_TYPE_QUERY)
                    .build());
        System.out.println("empty input -> OK (unexpected)");
      } catch (StatusRuntimeException e) {
        System.out.printf(
            "empty input -> %s (%d): %s%n",
            e.getStatus().getCode(), e.getStatus().getCode().value(), e.getStatus().getDescription());
      }
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
