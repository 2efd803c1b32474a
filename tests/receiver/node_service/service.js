'use strict';
// A Node.js service of the studio, instrumented with the official OpenTelemetry JavaScript SDK.
//
// It runs the stages of a job it is asked to run (POST /stages), as children of the caller's
// span: the W3C `traceparent` and `baggage` headers carry the trace and the job's ids. Every
// span it starts gets the job's ids from the baggage (what aura-otel's JobContextProcessor does
// in Python), and the stages set the span-contract attributes (aura.stage, gen_ai.*,
// aura.usage.*, aura.meta.*). Spans go over OTLP/HTTP protobuf to
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, with OTEL_EXPORTER_OTLP_HEADERS (the access token).
//
// Prints {"port": N} on stdout once it listens on 127.0.0.1; POST /shutdown flushes and exits.

const http = require('node:http');
const api = require('@opentelemetry/api');
const { NodeTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-node');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { ATTR_SERVICE_NAME } = require('@opentelemetry/semantic-conventions');

const JOB_KEYS = ['aura.job.id', 'aura.correlation.id', 'aura.project.id'];

// The job's ids from W3C baggage onto every span, at start (spans of libraries included).
class JobIdFromBaggage {
  onStart(span, parentContext) {
    const bag = api.propagation.getBaggage(parentContext);
    if (!bag) return;
    for (const key of JOB_KEYS) {
      const entry = bag.getEntry(key);
      if (entry) span.setAttribute(key, entry.value);
    }
  }
  onEnd() {}
  forceFlush() { return Promise.resolve(); }
  shutdown() { return Promise.resolve(); }
}

const exporter = new OTLPTraceExporter(); // endpoint and headers from OTEL_EXPORTER_OTLP_*
const batch = new BatchSpanProcessor(exporter, { scheduledDelayMillis: 100 });
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: process.env.OTEL_SERVICE_NAME || 'media-service' }),
  spanProcessors: [new JobIdFromBaggage(), batch],
});
provider.register(); // AsyncLocalStorage context + W3C trace context and baggage propagators
const tracer = api.trace.getTracer('studio-media-service', '1.0.0');

function stageAttributes(stage) {
  const attrs = { 'aura.stage': stage.stage };
  if (stage.provider) attrs['gen_ai.provider.name'] = stage.provider;
  if (stage.model) attrs['gen_ai.request.model'] = stage.model;
  if (stage.tokens_in !== undefined) attrs['gen_ai.usage.input_tokens'] = stage.tokens_in;
  if (stage.tokens_out !== undefined) attrs['gen_ai.usage.output_tokens'] = stage.tokens_out;
  if (stage.characters !== undefined) attrs['aura.usage.characters'] = stage.characters;
  if (stage.images !== undefined) attrs['aura.usage.images'] = stage.images;
  if (stage.image_size) attrs['aura.usage.image_size'] = stage.image_size;
  if (stage.image_quality) attrs['aura.usage.image_quality'] = stage.image_quality;
  if (stage.output_seconds !== undefined) attrs['aura.usage.output_seconds'] = stage.output_seconds;
  if (stage.scene_index !== undefined) attrs['aura.scene.index'] = stage.scene_index;
  for (const [key, value] of Object.entries(stage.metadata || {})) attrs[`aura.meta.${key}`] = value;
  return attrs;
}

function runStage(stage) {
  return tracer.startActiveSpan(`aura.stage.${stage.stage}`, { attributes: stageAttributes(stage) }, (span) => {
    try {
      if (stage.fail) {
        const error = new Error(stage.fail);
        span.recordException(error);
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: stage.fail });
        span.setAttribute('error.type', stage.error_code || 'GENERATION_ERROR');
      }
      if (stage.warn) {
        span.setAttribute('aura.result.status', 'warn');
        span.setAttribute('aura.result.message', stage.warn);
      }
    } finally {
      span.end();
    }
  });
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')); } catch (e) { reject(e); }
    });
    req.on('error', reject);
  });
}

function reply(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.method === 'POST' && req.url === '/stages') {
      const body = await readJson(req);
      const parent = api.propagation.extract(api.context.active(), req.headers);
      api.context.with(parent, () => {
        for (const stage of body.stages || []) runStage(stage);
      });
      await provider.forceFlush(); // the caller hears back only once the spans were sent
      reply(res, 200, { ok: true, trace_id: api.trace.getSpanContext(parent)?.traceId ?? null });
    } else if (req.method === 'POST' && req.url === '/shutdown') {
      await provider.shutdown();
      reply(res, 200, { ok: true });
      server.close(() => process.exit(0));
    } else {
      reply(res, 404, { error: 'not found' });
    }
  } catch (error) {
    reply(res, 500, { error: String(error) });
  }
});

process.on('SIGTERM', () => { provider.shutdown().finally(() => process.exit(0)); });

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
