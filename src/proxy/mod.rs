//! The `ProxyHttp` implementation: the spine of every request, its phases in the order pingora
//! calls them. authgate's own endpoints are in `endpoints`, header work in `headers`, local answers
//! are written by `respond`.

pub mod body;
pub mod connection;
pub mod endpoints;
pub mod headers;
pub mod respond;
pub mod route;
pub mod upstream;
pub mod verify;

use crate::auth::{ct_eq, Authenticator, CredentialSource, Credentials, Denial, Principal};
use crate::forwarded::{client_address, AddressText, TrustedProxies};
use crate::metrics::{status_class, UpstreamErrorKind};
use crate::proxy::upstream::Upstreams;
use crate::reply::{Failure, Format, Reply};
use crate::target::{has_prefix, PathPolicy, RequestTarget, TargetError, TargetForm};
use crate::url_token::{Found, Permission, UrlTokenError, UrlTokens};
use async_trait::async_trait;
use endpoints::{audit, login_protocol};
use headers::IdentityHeaders;
use http::header::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use route::Route;
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Gateway settings resolved once from the config.
pub struct GatewaySettings {
    pub public_paths: Vec<String>,
    pub cors_origins: Vec<HeaderValue>,
    pub identity: IdentityHeaders,
    /// What comes off each forwarded request (built from `identity` and `keep_credentials`).
    pub strip: headers::Strip,
    pub auth_body_limit: usize,
    pub auth_body_timeout: Duration,
    /// `limits.keepalive_idle_seconds`.
    pub keepalive_idle_secs: u64,
    /// Longest wait for the next byte of a forwarded request body.
    pub body_read_timeout: Duration,
    /// Longest silence, both ways, on an upgraded connection (WebSocket).
    pub websocket_idle: Duration,
    pub failed_login_status: u16,
    /// `login_limits.refusal_delay_ms`.
    pub login_refusal_delay: Duration,
    pub path_policy: PathPolicy,
    pub trusted_proxies: TrustedProxies,
    /// Routes that carry their token in the URL.
    pub url_tokens: UrlTokens,
    /// The decision endpoint's path (no trailing `/`), unless switched off.
    pub forward_auth_path: Option<String>,
}

pub struct Gateway {
    pub auth: Arc<Authenticator>,
    pub upstreams: Arc<Upstreams>,
    pub settings: GatewaySettings,
    /// Requests in progress (for a graceful shutdown that ends as soon as they are done).
    pub in_flight: Arc<AtomicUsize>,
    /// `authgate_upstream_response_seconds{upstream}` of each pool, in `upstreams.pools()`
    /// order: resolved once, not a labelled lookup per forwarded response.
    pub upstream_latency: Vec<prometheus::Histogram>,
    /// The series of forwarded requests, resolved once.
    pub forwarded: crate::metrics::ForwardedSeries,
    /// Audit lines of failed and refused logins, bounded under a flood (successes are always
    /// written); the flood report counts the rest.
    pub audit_budget: Arc<crate::telemetry::LogBudget>,
}

/// Counts a request as in flight for as long as its context lives.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Ctx {
    started: Instant,
    route: Route,
    /// The request target made canonical: every decision is made on its path, and it is what
    /// goes upstream. `None` until parsed, and for a target refused with 400.
    target: Option<RequestTarget>,
    /// Where the request came from: peer, client, scheme.
    origin: headers::Origin,
    public: bool,
    principal: Option<Principal>,
    denial: Option<Denial>,
    /// Result class of a locally answered auth call.
    result: Option<&'static str>,
    user: Option<String>,
    cors_origin: Option<HeaderValue>,
    /// The client's `X-Request-Id` if acceptable, else one of ours.
    request_id: HeaderValue,
    upstream_started: Option<Instant>,
    upstream_status: Option<u16>,
    upstream_ms: Option<f64>,
    _in_flight: InFlight,
}

/// An incoming request id is kept only when short and plainly printable.
fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

fn new_request_id() -> HeaderValue {
    let mut hex = [0u8; 32];
    hex::encode_to_slice(rand::random::<u128>().to_be_bytes(), &mut hex)
        .expect("16 bytes fill 32 hex digits");
    HeaderValue::from_bytes(&hex).expect("hex is a valid header value")
}

pub const REQUEST_ID: &str = "x-request-id";

impl Gateway {
    /// The name of the upstream the request goes (or went) to, for metric labels.
    fn upstream_name(&self, ctx: &Ctx) -> &str {
        let path = ctx.target.as_ref().map_or("/", RequestTarget::path);
        &self.upstreams.route(path).name
    }

    /// Forwarded without a token (`public_paths`).
    fn is_public(&self, path: &str) -> bool {
        self.settings
            .public_paths
            .iter()
            .any(|p| has_prefix(path, p))
    }

    fn allowed_origin(&self, req: &RequestHeader) -> Option<HeaderValue> {
        let origin = req.headers.get(http::header::ORIGIN)?;
        self.settings
            .cors_origins
            .iter()
            .find(|allowed| allowed.as_bytes() == origin.as_bytes())
            .cloned()
    }

    /// What a request is, by method and canonical path.
    fn classify(&self, method: &http::Method, path: &str) -> Route {
        match Route::classify(method, path) {
            // tus discovery: the upstream answers, once the URL token is decided on.
            Route::Preflight if self.settings.url_tokens.options_go_upstream(path) => {
                Route::Forward
            }
            route => route,
        }
    }

    /// The route carrying its token in the URL that a request is on (ioGates transfers), and the
    /// token there. A header token must then be the same one: two tokens name no single caller.
    fn url_token<'a>(
        &self,
        path: &'a str,
        query: Option<&'a str>,
        header: &Credentials<'_>,
    ) -> Result<Option<Found<'a>>, UrlTokenError> {
        let found = self.settings.url_tokens.find(path, query).transpose()?;
        let in_url = found.as_ref().and_then(|f| f.token.as_deref());
        match (in_url, header.token) {
            (Some(in_url), Some(token)) if !ct_eq(token, in_url) => Err(UrlTokenError::Differs),
            _ => Ok(found),
        }
    }

    /// The path for log lines: a token in it hidden, in a decision request's Envoy form too.
    fn loggable_path<'a>(&self, path: &'a str) -> Cow<'a, str> {
        let tokens = &self.settings.url_tokens;
        match self.settings.forward_auth_path.as_deref() {
            Some(verify) if has_prefix(path, verify) && path.len() > verify.len() => {
                let original = &path[verify.len()..];
                match tokens.redact(original) {
                    Cow::Owned(hidden) => Cow::Owned(format!("{verify}{hidden}")),
                    Cow::Borrowed(_) => Cow::Borrowed(path),
                }
            }
            _ => tokens.redact(path),
        }
    }

    /// Headers every local reply carries: the request id, and CORS for an allowed origin.
    fn reply_extra(&self, ctx: &Ctx) -> Vec<(HeaderName, HeaderValue)> {
        let mut extra = vec![(HeaderName::from_static(REQUEST_ID), ctx.request_id.clone())];
        if !self.settings.cors_origins.is_empty() {
            extra.push((http::header::VARY, HeaderValue::from_static("Origin")));
        }
        if let Some(origin) = &ctx.cors_origin {
            extra.extend(headers::cors_headers(origin));
        }
        extra
    }

    /// Peer, client (behind trusted proxies, the first untrusted hop) and scheme.
    fn origin_of(&self, session: &Session) -> headers::Origin {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let trusted = &self.settings.trusted_proxies;
        let forwarded_for = headers::forwarded_for(session.req_header());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        headers::Origin {
            peer,
            client: peer.map(|peer| client_address(peer, forwarded_for, trusted)),
            trusted_peer: peer.is_some_and(|peer| trusted.contains(peer)),
            scheme: if tls { "https" } else { "http" },
        }
    }

    /// An idle kept-alive connection is closed after `limits.keepalive_idle_seconds`; pingora
    /// alone keeps one open for ever. Only where keep-alive is on already: not after
    /// `Connection: close`, for an HTTP/1.0 client that did not ask, nor while shutting down.
    fn bound_keepalive(&self, session: &mut Session) {
        if let Some(current) = session.get_keepalive() {
            let idle = self.settings.keepalive_idle_secs;
            let bounded = if current == 0 {
                idle
            } else {
                current.min(idle)
            };
            session.set_keepalive(Some(bounded));
            if let Some(stream) = connection::client_stream(session) {
                stream.set_idle(Duration::from_secs(bounded));
            }
        }
    }

    /// A request about to be forwarded: the body's read timeout (or an upgraded connection's idle
    /// one), and the `100 Continue` a client waits for before sending its body. authgate answers
    /// that itself, as nginx does, and `Expect` does not go upstream: pingora, relaying the
    /// upstream's 100, closed the connection after the response.
    async fn prepare_to_forward(&self, session: &mut Session) -> Result<()> {
        let read_timeout = if session.is_upgrade_req() {
            self.settings.websocket_idle
        } else {
            self.settings.body_read_timeout
        };
        session.set_read_timeout(Some(read_timeout));
        body::continue_if_expected(session).await
    }

    /// The request target made canonical, once its Host is unambiguous too.
    fn read_target(&self, req: &RequestHeader) -> std::result::Result<RequestTarget, Unreadable> {
        headers::check_host(req)?;
        let target = RequestTarget::parse(req.raw_path(), &self.settings.path_policy)?;
        if *target.form() == TargetForm::Asterisk && req.method != http::Method::OPTIONS {
            return Err(TargetError::Asterisk.into());
        }
        Ok(target)
    }
}

/// Whether `error` is the client closing or resetting its connection, or never finishing its
/// request, rather than anything going wrong on this side.
/// The credentials to decide on and the permission the route needs: a URL token in place of the
/// headers' own; off such routes, the headers' with the share's own rule.
fn presented<'a>(
    header: Credentials<'a>,
    in_url: Option<&'a Found<'_>>,
) -> (Credentials<'a>, Permission) {
    match in_url {
        Some(Found {
            token: Some(token),
            permission,
        }) => {
            let credentials = Credentials {
                token: Some(token),
                source: CredentialSource::Url,
                ..header
            };
            (credentials, *permission)
        }
        Some(Found {
            token: None,
            permission,
        }) => (header, *permission),
        None => (header, Permission::Method),
    }
}

fn client_went_away(error: &Error) -> bool {
    use ErrorType::*;
    *error.esource() == ErrorSource::Downstream
        && matches!(
            error.etype(),
            ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout
        )
}

/// A request refused before any decision (400): what it asks for cannot be read one way only.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Host(#[from] headers::HostError),
}

impl Unreadable {
    /// Low-cardinality label for the access log.
    fn as_str(&self) -> &'static str {
        match self {
            Unreadable::Target(e) => e.as_str(),
            Unreadable::Host(headers::HostError::Missing) => "missing_host",
            Unreadable::Host(headers::HostError::Repeated) => "repeated_host",
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ctx {
            started: Instant::now(),
            route: Route::Forward,
            target: None,
            origin: headers::Origin::default(),
            public: false,
            principal: None,
            denial: None,
            result: None,
            user: None,
            cors_origin: None,
            request_id: HeaderValue::from_static(""),
            upstream_started: None,
            upstream_status: None,
            upstream_ms: None,
            _in_flight: InFlight(self.in_flight.clone()),
        }
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        if let Some(stream) = connection::client_stream(session) {
            stream.header_received();
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.bound_keepalive(session);
        let req = session.req_header();
        ctx.cors_origin = self.allowed_origin(req);
        ctx.request_id = match req.headers.get(REQUEST_ID) {
            Some(id) if acceptable_request_id(id) => id.clone(),
            _ => new_request_id(),
        };
        ctx.origin = self.origin_of(session);
        // Nothing is decided before the target and Host are known to be unambiguous.
        let target = match self.read_target(req) {
            Ok(target) => ctx.target.insert(target),
            Err(refused) => {
                ctx.route = Route::BadTarget;
                ctx.result = Some(refused.as_str());
                let reply = Failure::bad_request(Format::Text, &refused);
                respond::write(reply, session, &self.reply_extra(ctx)).await?;
                return Ok(true);
            }
        };
        let path = target.path();
        ctx.route = match &self.settings.forward_auth_path {
            Some(verify) if has_prefix(path, verify) => Route::Verify,
            _ => self.classify(&req.method, path),
        };
        let reply = match ctx.route {
            Route::Forward => {
                if self.is_public(path) {
                    ctx.public = true;
                    self.prepare_to_forward(session).await?;
                    return Ok(false);
                }
                let wants_json = headers::wants_json(req);
                let header = headers::credentials(req);
                let in_url = match self.url_token(path, req.uri.query(), &header) {
                    Ok(found) => found,
                    Err(refused) => {
                        ctx.result = Some(refused.as_str());
                        let reply = Failure::bad_request(Format::Json, &refused);
                        respond::write(reply, session, &self.reply_extra(ctx)).await?;
                        return Ok(true);
                    }
                };
                let (credentials, permission) = presented(header, in_url.as_ref());
                let decided = self
                    .auth
                    .authorize_needing(credentials, &req.method, path, permission)
                    .await;
                match decided {
                    Ok(principal) => {
                        ctx.principal = Some(principal);
                        self.prepare_to_forward(session).await?;
                        return Ok(false);
                    }
                    Err(denial) => {
                        ctx.denial = Some(denial);
                        Reply::denial(denial, credentials.source, wants_json)
                    }
                }
            }
            Route::Verify => self.decide(session, ctx).await,
            Route::Preflight => Reply::empty(200),
            Route::WrongMethod(allow) => Reply::method_not_allowed(allow),
            route => {
                let client = ctx.origin.client;
                let outcome = self.answer_auth_call(session, route, client).await;
                if let Some(protocol) = login_protocol(route) {
                    self.auth
                        .metrics()
                        .logins
                        .with_label_values(&[protocol.as_str(), outcome.result])
                        .inc();
                }
                if outcome.reply.status == 429 {
                    // Answered late: a client ignoring Retry-After gets one refusal per
                    // connection per delay, and a waiting request costs next to nothing. The
                    // delay varies (from half to one and a half times) so that a flood's answers
                    // and its next attempts do not all come at the same instant.
                    let delay = self.settings.login_refusal_delay;
                    tokio::time::sleep(delay / 2 + delay.mul_f64(rand::random::<f64>())).await;
                }
                let succeeded = outcome.reply.status < 400;
                if route != Route::ValidateToken && (succeeded || self.audit_budget.allow()) {
                    audit(route, &outcome, ctx.origin.client);
                }
                ctx.result = Some(outcome.result);
                ctx.user = outcome.user;
                outcome.reply
            }
        };
        respond::write(reply, session, &self.reply_extra(ctx)).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        let path = ctx.target.as_ref().map_or("/", RequestTarget::path);
        let pool = self.upstreams.route(path);
        match pool.peer() {
            Some(mut peer) => {
                // An upgraded connection may sit quiet far longer than a response may take.
                if session.is_upgrade_req() {
                    peer.options.read_timeout = Some(self.settings.websocket_idle);
                    peer.options.write_timeout = Some(self.settings.websocket_idle);
                }
                Ok(Box::new(peer))
            }
            None => {
                let mut e = Error::explain(
                    ErrorType::ConnectNoRoute,
                    format!("no backend in upstream {}", pool.name),
                );
                e.esource = ErrorSource::Upstream;
                Err(e)
            }
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let identity = &self.settings.identity;
        // Forward exactly the target every decision was made on, in origin-form.
        if let Some(target) = &ctx.target {
            if let Some(rewritten) = target.rewritten() {
                upstream.set_raw_path(rewritten)?;
            }
            if let TargetForm::Absolute { authority } = target.form() {
                upstream.insert_header(http::header::HOST, authority.as_str())?;
            }
        }
        if !upstream.headers.contains_key(http::header::HOST) {
            // HTTP/1.0 without Host: the upstream's own name for itself.
            let path = ctx.target.as_ref().map_or("/", RequestTarget::path);
            let host = self.upstreams.route(path).host.clone();
            upstream.insert_header(http::header::HOST, host)?;
        }
        headers::collapse_content_length(upstream)?;
        // Answered here already (`prepare_to_forward`).
        upstream.remove_header(&http::header::EXPECT);
        self.settings.strip.apply(upstream);
        if let Some(p) = &ctx.principal {
            for (name, value) in identity.present(p) {
                upstream.insert_header(name.clone(), value)?;
            }
        }
        upstream.insert_header(REQUEST_ID, ctx.request_id.clone())?;
        headers::add_forwarded(upstream, ctx.origin)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        ctx.upstream_status = Some(status);
        if let Some(started) = ctx.upstream_started {
            let elapsed = started.elapsed();
            ctx.upstream_ms = Some(elapsed.as_secs_f64() * 1000.0);
            let path = ctx.target.as_ref().map_or("/", RequestTarget::path);
            if let Some(latency) = self.upstream_latency.get(self.upstreams.route_index(path)) {
                latency.observe(elapsed.as_secs_f64());
            }
        }
        if status >= 500 {
            self.auth
                .metrics()
                .upstream_errors
                .with_label_values(&[
                    self.upstream_name(ctx),
                    UpstreamErrorKind::Status5xx.as_str(),
                ])
                .inc();
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Trailers are not passed on: announcing them would promise fields that never come.
        response.remove_header(&http::header::TRAILER);
        // An HTTP/1.0 client cannot read chunked framing: with no length, the body ends when the
        // connection closes.
        if session.req_header().version == http::Version::HTTP_10
            && response
                .remove_header(&http::header::TRANSFER_ENCODING)
                .is_some()
        {
            response.remove_header(&http::header::CONTENT_LENGTH);
        }
        // Per forwarded response: insert directly, no list to build.
        response.insert_header(REQUEST_ID, ctx.request_id.clone())?;
        if !self.settings.cors_origins.is_empty() {
            response.append_header(http::header::VARY, "Origin")?;
        }
        if let Some(origin) = &ctx.cors_origin {
            for (name, value) in headers::cors_headers(origin) {
                response.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        _ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        // A body arriving in parts reaches the client part by part, as it arrives.
        if !end_of_stream {
            if let Some(stream) = connection::client_stream(session) {
                stream.flush_every_write();
            }
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        let code = match e.etype() {
            HTTPStatus(code) => *code,
            ConnectTimedout | ReadTimedout | WriteTimedout => match e.esource() {
                ErrorSource::Downstream => 0,
                _ => 504,
            },
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    WriteError | ReadError | ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if *e.esource() == ErrorSource::Upstream {
            let kind = match e.etype() {
                ReadTimedout | WriteTimedout => UpstreamErrorKind::Timeout,
                ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | SocketError => {
                    UpstreamErrorKind::Connect
                }
                _ => UpstreamErrorKind::Other,
            };
            self.auth
                .metrics()
                .upstream_errors
                .with_label_values(&[self.upstream_name(ctx), kind.as_str()])
                .inc();
        }
        // Once the upstream's response has started, all we can do is close.
        if code > 0 && session.response_written().is_none() {
            let failure = match code {
                502 => Failure::UpstreamDown,
                504 => Failure::UpstreamTimeout,
                400 => Failure::BadRequest,
                _ => Failure::Internal,
            };
            let reply = failure.reply(Format::Text);
            if let Err(write_error) = respond::write(reply, session, &self.reply_extra(ctx)).await {
                tracing::debug!(error = %write_error, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client that goes away mid-request is an everyday event: it is in the access line (with
    /// its error), not an ERROR line of pingora's.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        client_went_away(error)
    }

    /// What pingora's own log lines say of the request: method and path, never the query (it may
    /// carry a token or a password) nor other headers.
    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        let req = session.req_header();
        let path = ctx
            .target
            .as_ref()
            .map_or_else(|| req.uri.path(), RequestTarget::path);
        // A token in the path never reaches a log line.
        format!("{} {}", req.method, self.loggable_path(path))
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let metrics = self.auth.metrics();
        let route = ctx.route.as_str();
        let elapsed = ctx.started.elapsed();
        let forwarded = &self.forwarded;
        let class = status_class(status);
        match (ctx.route, class) {
            (Route::Forward, "2xx") => forwarded.answered_2xx.inc(),
            _ => metrics.requests.with_label_values(&[route, class]).inc(),
        }
        match ctx.route {
            Route::Forward => forwarded.duration.observe(elapsed.as_secs_f64()),
            _ => metrics
                .request_duration
                .with_label_values(&[route])
                .observe(elapsed.as_secs_f64()),
        }
        let decision = match (ctx.route, &ctx.principal, ctx.denial) {
            (Route::Forward | Route::Verify, Some(_), _) => Some("allowed"),
            (Route::Forward | Route::Verify, None, Some(denial)) => Some(denial.as_str()),
            (Route::Forward | Route::Verify, None, None) if ctx.public => Some("public"),
            _ => None,
        };
        match decision {
            Some("allowed") => forwarded.allowed.inc(),
            Some("public") => forwarded.public.inc(),
            Some(outcome) => metrics.auth_decisions.with_label_values(&[outcome]).inc(),
            None => {}
        }
        let req = session.req_header();
        let principal = ctx.principal.as_ref();
        // tracing evaluates the fields only when the access log is on.
        tracing::info!(
            target: "authgate::access",
            request_id = ctx.request_id.to_str().unwrap_or_default(),
            method = req.method.as_str(),
            path = &*self.loggable_path(ctx.target.as_ref().map_or(req.uri.path(), RequestTarget::path)),
            client = ctx.origin.client.map(AddressText::new).as_ref().map(AddressText::as_str),
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            route,
            auth = decision,
            result = ctx.result,
            user = principal.map(Principal::subject).or(ctx.user.as_deref()),
            share = principal.and_then(Principal::share_id),
            app = principal.map(Principal::app_name),
            cache_hit = principal.map(|p| p.cache_hit),
            upstream_status = ctx.upstream_status,
            upstream_ms = ctx.upstream_ms,
            error = error.map(|e| e.etype().as_str()),
        );
    }
}
