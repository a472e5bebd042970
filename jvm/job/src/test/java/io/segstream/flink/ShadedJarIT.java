package io.segstream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.zip.ZipFile;
import org.junit.jupiter.api.Test;

/**
 * The shaded job jar on its own: the engine (CEL rules, protobuf, Jackson, DataSketches,
 * BouncyCastle, all relocated) replays the differential test's scripts to the expected bytes, and
 * no library class is left at its original package.
 */
class ShadedJarIT {
  private final Path jar = Path.of(System.getProperty("segstream.jobJar"));
  private final Path crosscheck = Path.of(System.getProperty("segstream.crosscheck"));

  @Test
  void engineRunsFromTheShadedJar() throws Exception {
    for (String script : List.of("replay_small", "replay_many")) {
      Path out = Files.createTempFile(script, ".out");
      Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
          "-cp", jar.toString(), "io.segstream.engine.Replay")
          .redirectInput(crosscheck.resolve(script + ".jsonl").toFile())
          .redirectOutput(out.toFile())
          .redirectError(ProcessBuilder.Redirect.INHERIT)
          .start();
      assertTrue(p.waitFor(300, TimeUnit.SECONDS), script + " timed out");
      assertEquals(0, p.exitValue(), script);
      assertEquals(Files.readString(crosscheck.resolve(script + ".expected.jsonl")), Files.readString(out), script);
      Files.delete(out);
    }
  }

  @Test
  void librariesAreRelocated() throws Exception {
    List<String> stray = new ArrayList<>();
    try (ZipFile zip = new ZipFile(jar.toFile())) {
      zip.stream().map(e -> e.getName()).filter(n -> n.endsWith(".class"))
          .filter(n -> n.startsWith("com/fasterxml/") || n.startsWith("dev/cel/") || n.startsWith("cel/")
              || n.startsWith("com/google/") || n.startsWith("org/antlr/") || n.startsWith("org/bouncycastle/")
              || n.startsWith("org/apache/datasketches/") || n.startsWith("org/threeten/") || n.startsWith("org/yaml/")
              || n.startsWith("io/grpc/") || n.startsWith("io/opentelemetry/") || n.startsWith("io/opencensus/")
              || n.startsWith("io/perfmark/") || n.startsWith("org/apache/http/") || n.startsWith("org/apache/commons/codec/")
              || n.startsWith("META-INF/versions/"))
          .forEach(stray::add);
    }
    assertEquals(List.of(), stray);
  }

  /** gRPC finds its transport and name resolvers through META-INF/services: the files must be
   * renamed with the relocation and name classes that exist (ServicesResourceTransformer). */
  @Test
  void grpcServicesAreRelocated() throws Exception {
    try (ZipFile zip = new ZipFile(jar.toFile())) {
      assertEquals(null, zip.getEntry("META-INF/services/io.grpc.ManagedChannelProvider"));
      for (String service : List.of("ManagedChannelProvider", "NameResolverProvider", "LoadBalancerProvider")) {
        var entry = zip.getEntry("META-INF/services/io.segstream.shaded.io.grpc." + service);
        assertTrue(entry != null, service);
        String text = new String(zip.getInputStream(entry).readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        for (String line : text.split("\n")) {
          line = line.strip();
          if (line.isEmpty() || line.startsWith("#")) continue;
          assertTrue(line.startsWith("io.segstream.shaded."), line);
          assertTrue(zip.getEntry(line.replace('.', '/') + ".class") != null, line);
        }
      }
    }
  }
}
