package dev.flashsale.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The few calls of the Confluent-compatible schema registry REST API the
 * peer needs (a Confluent Schema Registry's root or Apicurio's
 * /apis/ccompat/v7), with the JDK's HTTP client:
 *
 * <ul>
 *   <li>{@code POST /subjects/{subject}}: the ID of a schema already
 *       registered under a subject (our outcome and dead-letter schemas);</li>
 *   <li>{@code PUT /config/{subject}} and {@code POST /subjects/{subject}/versions}:
 *       register it when it is not, with BACKWARD compatibility, as our
 *       services do at start (schemas/src/registry.rs);</li>
 *   <li>{@code GET /schemas/ids/{id}}: a writer schema, to decode a request.</li>
 * </ul>
 *
 * Errors are told apart by whose fault they are, as in classify.rs: a 4xx
 * answer about an ID is the record's (unknown_schema, dead-lettered); no
 * answer or a 5xx is the registry's, retried with bounded backoff, and past
 * the bound the peer stops rather than decide on a partial view.
 */
final class Registry {
    private static final Logger LOG = LoggerFactory.getLogger(Registry.class);
    private static final String CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";
    /** Like ours (classify.rs REGISTRY_BACKOFF): 40 tries from 50 ms, doubling to 2 s apart. */
    private static final int ATTEMPTS_MAX = 40;
    private static final long FIRST_WAIT_MS = 50;
    private static final long MAX_WAIT_MS = 2_000;

    /** The registry answered that it does not know a schema ID (or cannot parse what it holds). */
    static final class UnknownSchemaException extends Exception {
        private static final long serialVersionUID = 1L;

        UnknownSchemaException(String message) {
            super(message);
        }
    }

    /** The registry could not be asked (network, 5xx): transient. */
    static final class UnavailableException extends IOException {
        private static final long serialVersionUID = 1L;

        UnavailableException(String message) {
            super(message);
        }
    }

    private final String baseUrl;
    private final HttpClient http;
    private final ObjectMapper json = new ObjectMapper();
    /** Writer schemas by ID; IDs are immutable, so for the life of the process. */
    private final Map<Long, Schema> writers = new ConcurrentHashMap<>();

    Registry(String baseUrl) {
        this.baseUrl = baseUrl.replaceAll("/+$", "");
        this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    }

    /**
     * The ID of {@code schemaText} under {@code subject}, registering it
     * (with BACKWARD compatibility) when the subject does not have it yet.
     * Registering the same text again returns the existing ID, so every
     * instance may call this at start.
     */
    int idOf(String subject, String schemaText) throws IOException, InterruptedException {
        String body = json.writeValueAsString(Map.of("schema", schemaText));
        HttpResponse<String> found = call(post("/subjects/" + subject, body));
        if (found.statusCode() == 200) {
            return json.readTree(found.body()).path("id").asInt();
        }
        if (found.statusCode() != 404) {
            throw new IOException("looking up " + subject + ": HTTP " + found.statusCode() + " " + found.body());
        }
        HttpResponse<String> config = call(request("/config/" + subject)
                .PUT(HttpRequest.BodyPublishers.ofString("{\"compatibility\":\"BACKWARD\"}")).build());
        if (config.statusCode() / 100 != 2) {
            throw new IOException("PUT /config/" + subject + ": HTTP " + config.statusCode() + " " + config.body());
        }
        HttpResponse<String> registered = call(post("/subjects/" + subject + "/versions", body));
        if (registered.statusCode() / 100 != 2) {
            throw new IOException("registering " + subject + ": HTTP " + registered.statusCode() + " "
                    + registered.body());
        }
        int id = json.readTree(registered.body()).path("id").asInt();
        LOG.info("registered the schema of {} as id {}", subject, id);
        return id;
    }

    /** The writer schema of {@code id}, from cache or the registry (retried while it is unavailable). */
    Schema writerSchema(long id) throws UnknownSchemaException, IOException, InterruptedException {
        Schema cached = writers.get(id);
        if (cached != null) {
            return cached;
        }
        long waitMs = FIRST_WAIT_MS;
        for (int attempt = 1; ; attempt++) {
            try {
                Schema schema = fetch(id);
                writers.put(id, schema);
                return schema;
            } catch (UnavailableException e) {
                if (attempt >= ATTEMPTS_MAX) {
                    throw new IOException("schema registry unavailable after " + attempt + " attempts: "
                            + e.getMessage(), e);
                }
                LOG.warn("schema registry unavailable ({}), retrying in {} ms", e.getMessage(), waitMs);
                Thread.sleep(waitMs);
                waitMs = Math.min(waitMs * 2, MAX_WAIT_MS);
            }
        }
    }

    private Schema fetch(long id) throws UnknownSchemaException, IOException, InterruptedException {
        HttpResponse<String> answer = call(request("/schemas/ids/" + id).GET().build());
        int status = answer.statusCode();
        if (status == 429 || status >= 500) {
            throw new UnavailableException("GET /schemas/ids/" + id + ": HTTP " + status);
        }
        if (status != 200) {
            throw new UnknownSchemaException("schema id " + id + " is unknown to the registry: HTTP " + status
                    + " " + answer.body());
        }
        JsonNode node = json.readTree(answer.body());
        String type = node.path("schemaType").asText("AVRO");
        if (!"AVRO".equalsIgnoreCase(type)) {
            throw new UnknownSchemaException("schema id " + id + " is a " + type + " schema, not Avro");
        }
        try {
            return new Schema.Parser().parse(node.path("schema").asText());
        } catch (RuntimeException e) {
            throw new UnknownSchemaException("schema id " + id + " does not parse: " + e.getMessage());
        }
    }

    private HttpRequest.Builder request(String path) {
        return HttpRequest.newBuilder(URI.create(baseUrl + path))
                .timeout(Duration.ofSeconds(5))
                .header("Accept", CONTENT_TYPE)
                .header("Content-Type", CONTENT_TYPE);
    }

    private HttpRequest post(String path, String body) {
        return request(path).POST(HttpRequest.BodyPublishers.ofString(body)).build();
    }

    /** One HTTP round trip; no answer at all is the registry being unavailable. */
    private HttpResponse<String> call(HttpRequest r) throws UnavailableException, InterruptedException {
        try {
            return http.send(r, HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new UnavailableException(r.method() + " " + r.uri().getPath() + ": " + e);
        }
    }
}
