//! The access gate in front of the admin service, as a tower service: the
//! method comes from the request path (an unknown path is refused), the
//! credentials from the headers and the connection, and the caller is set
//! for the handler, so an admin call forwarded to the meta leader carries
//! it and is checked there again.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use cairn_auth::policy::Principal;
use cairn_auth::{AdminRpc, Call};
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;

use super::gate::{AccessGate, CALLER, Caller, Credentials};

/// `inner` (the admin server) behind `gate`.
#[derive(Clone)]
pub struct AdminGate<S> {
    inner: S,
    gate: AccessGate,
}

impl<S> AdminGate<S> {
    /// Guards `inner` with `gate`.
    pub fn new(inner: S, gate: AccessGate) -> Self {
        Self { inner, gate }
    }
}

impl<S: NamedService> NamedService for AdminGate<S> {
    const NAME: &'static str = S::NAME;
}

/// The admin method a gRPC path names.
pub fn admin_rpc(path: &str) -> Option<AdminRpc> {
    let method = path
        .strip_prefix('/')?
        .strip_prefix(AdminRpc::SERVICE)?
        .strip_prefix('/')?;
    AdminRpc::ALL.iter().copied().find(|r| r.method() == method)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for AdminGate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let Some(rpc) = admin_rpc(req.uri().path()) else {
            let s = tonic::Status::unimplemented(format!("no admin method {}", req.uri().path()));
            return Box::pin(async move { Ok(s.into_http()) });
        };
        let creds = Credentials::of_parts(req.headers(), req.extensions());
        match self.gate.check("grpc", &creds, &Call::Admin(rpc)) {
            Err(e) => {
                let s = e.status();
                Box::pin(async move { Ok(s.into_http()) })
            }
            Ok(principal) => {
                let caller = Caller {
                    bearer: creds.bearer,
                    user: match principal {
                        Some(Principal::User { name, .. }) => Some(name),
                        _ => None,
                    },
                };
                let fut = self.inner.call(req);
                Box::pin(CALLER.scope(caller, fut))
            }
        }
    }
}
