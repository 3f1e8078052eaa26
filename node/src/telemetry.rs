//! Logs and traces. One `tracing` subscriber per node process: text or JSON
//! logs on stderr and, when an OTLP endpoint is configured, OpenTelemetry
//! spans exported over OTLP/gRPC. Plus the W3C trace-context propagation
//! that carries a request's trace from node to node in gRPC metadata, so
//! one write shows its whole path (client edge → forward → leader →
//! Raft proposal) as one trace.
//!
//! Spans are created at `DEBUG` level under the `cairn_node` target: with
//! tracing off and the default log level they are disabled and cost next to
//! nothing. Only `cairn_node` spans are exported — never those of h2, hyper,
//! tonic or the exporter itself, which would otherwise add hundreds of spans
//! per request (and trace their own export).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Why logging or tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a malformed endpoint).
    #[error("building the OTLP trace exporter for {endpoint}: {source}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// The exporter's error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A global subscriber was already installed.
    #[error("installing the log subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// Where and how much to trace.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// The OTLP/gRPC collector (`http://HOST:4317`).
    pub endpoint: String,
    /// Share of new traces sampled, 0 to 1; a caller's sampled
    /// `traceparent` is always followed.
    pub sample_ratio: f64,
    /// This node's id, exported as `service.instance.id`.
    pub node_id: u64,
}

/// What [`init`] set up; [`Telemetry::shutdown`] flushes buffered spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered (waiting up to 5 s for the
    /// collector) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown_with_timeout(std::time::Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "flushing traces at shutdown failed");
        }
    }
}

/// Installs the process's subscriber: logs in `log_format` (`text` or
/// `json`) filtered by `log_level` (`tracing`'s filter syntax; the config's
/// `log-level`, `--log-level` or `CAIRN_LOG`), and the trace exporter when
/// `traces` is set. Call it inside the Tokio runtime: the OTLP exporter's
/// connection lives there.
///
/// # Errors
/// A bad endpoint, or a subscriber already installed.
pub fn init(
    log_format: &str,
    log_level: &str,
    traces: Option<&TraceSettings>,
) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_new(log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = if log_format == "json" {
        fmt.json().map_event_format(WithTraceId).boxed()
    } else {
        fmt.map_event_format(WithTraceId).boxed()
    };
    let provider = traces.map(provider).transpose()?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("cairn-node"))
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::OFF)
                    .with_target("cairn_node", LevelFilter::DEBUG),
            )
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()?;
    if let Some(t) = traces {
        tracing::info!(
            endpoint = %t.endpoint,
            sample_ratio = t.sample_ratio,
            "exporting traces over OTLP"
        );
    }
    Ok(Telemetry { provider })
}

/// The id of the sampled trace the current span belongs to, if any: what
/// a log line carries so it can be found next to its trace.
fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}

/// Log lines written inside a sampled trace start with its id: a JSON
/// line gets a leading `"trace_id"` field, a text line a `trace_id=…`
/// prefix. Outside a sampled trace (and always with tracing off) lines
/// are as the inner format writes them.
struct WithTraceId<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithTraceId<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(trace_id) = current_trace_id() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
            None => write!(writer, "trace_id={trace_id} {line}"),
        }
    }
}

fn provider(t: &TraceSettings) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(t.endpoint.clone())
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: t.endpoint.clone(),
            source,
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("cairn-node")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            t.node_id.to_string(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            t.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// Writes the current span's trace context (W3C `traceparent`) into an
/// outgoing request's metadata; nothing when tracing is off.
pub fn inject_current(metadata: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
    }
}

/// Makes `span` a child of the trace a caller sent in `metadata`
/// (`traceparent`), if it sent one.
pub fn continue_remote(span: &tracing::Span, metadata: &MetadataMap) {
    let cx = TraceContextPropagator::new().extract(&MetadataExtractor(metadata));
    if cx.span().span_context().is_valid() {
        // Fails only for a span that already started its OTel span; ours
        // are fresh.
        let _ = span.set_parent(cx);
    }
}

/// [`continue_remote`] for HTTP request headers.
pub fn continue_remote_http(span: &tracing::Span, headers: &http::HeaderMap) {
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                KeyRef::Ascii(k) => Some(k.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
