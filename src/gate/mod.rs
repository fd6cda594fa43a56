//! The gate: per request, identify → plan (pure policy) → one evaluation in the counter store
//! → decide (pure policy) → forward, flag, tarpit or reject.
//!
//! The policy is held in an [`ArcSwap`]: a reload builds the whole new policy off the hot path
//! and swaps it in one store; requests in flight keep the one they started with.

pub mod reload;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use tracing::debug;

use crate::admin::hot;
use crate::evidence::{self, DecisionIds, EvidenceLog, HitRecord, Record};
use crate::forward::body::ProxyBody;
use crate::forward::error::error_response;
use crate::limit::{CounterStore, Lease};
use crate::policy::identity::{account_id, extract_api_key};
use crate::policy::{Decision, Early, FactsKey, Hit, Plan, Policy, RequestFacts, Verdict};
use crate::server::info::{micros, ConnInfo};

/// A validated policy with the secret its identity section names.
pub struct ActivePolicy {
    pub policy: Policy,
    pub secret: Secret,
    /// Per `[[policy.clients]]` entry, in order: what each claimed request needs, built once.
    clients: Vec<ClientSignals>,
    /// `identity.api_key_headers`, parsed once: a lookup by `&str` parses the name each time.
    key_headers: Vec<HeaderName>,
}

/// A known client's upstream header value and claim counters.
struct ClientSignals {
    name: HeaderValue,
    matched: metrics::Counter,
    mismatched: metrics::Counter,
}

impl ActivePolicy {
    pub fn new(policy: Policy, secret: Secret) -> Self {
        let clients = policy
            .clients()
            .iter()
            .map(|c| {
                // Labels from the policy file (bounded), never from traffic.
                let counter = |result: &'static str| {
                    metrics::counter!("portcullis_claims_total",
                        "client" => c.name().to_string(), "result" => result)
                };
                ClientSignals {
                    // Client names are [a-z0-9_-] (validated): always a header value.
                    name: HeaderValue::try_from(c.name())
                        .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
                    matched: counter("match"),
                    mismatched: counter("mismatch"),
                }
            })
            .collect();
        // Validated header names; one that did not parse would never be found anyway.
        let key_headers = policy
            .identity()
            .api_key_headers()
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        Self {
            key_headers,
            policy,
            secret,
            clients,
        }
    }
}

/// The keyed-hash secret for account ids. Never printed.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What the gate tells the connection to do with a request.
pub enum Pass {
    /// Forward; hold `lease` until the response body ends; add `headers` to the upstream
    /// request (flags) and `response_headers` to the client's response; wait `delay` first.
    Forward {
        lease: Lease,
        upstream_headers: Vec<(HeaderName, HeaderValue)>,
        response_headers: Vec<(HeaderName, HeaderValue)>,
        delay: Option<Duration>,
    },
    /// Answer the client now.
    Respond(Response<ProxyBody>),
}

/// The HTTP-layer fingerprints of one request (the TLS ones live in `ConnInfo`).
pub struct RequestFingerprints<'a> {
    pub header: &'a crate::fingerprint::HeaderFp,
    pub h2: Option<&'a crate::fingerprint::H2Fingerprint>,
    /// JA4H (FoxIO License): computed only when built with the `ja4h` feature.
    pub ja4h: Option<String>,
}

/// The upstream header that carries JA4H (`ja4h` feature only).
pub const JA4H_HEADER: &str = "x-portcullis-ja4h";

/// The flag header sent to the upstream, naming the rules that matched.
pub const FLAG_HEADER: &str = "x-portcullis-flags";
/// The `[[policy.clients]]` name the request claims to be.
pub const CLAIM_HEADER: &str = "x-portcullis-claim";
/// The layers that contradict the claim, e.g. `ja4,header_fp`.
pub const CLAIM_MISMATCH_HEADER: &str = "x-portcullis-claim-mismatch";
/// `relay` or `direct` (`policy.relay_gap`); absent when the connection was not measured.
pub const RELAY_HEADER: &str = "x-portcullis-relay";

/// A connection's last plan, with the policy and the facts it was made from. The requests of
/// one connection mostly share every fact (account, address, fingerprints, path, user agent),
/// and a plan depends on the policy and the facts alone; building one (every layer key as a
/// string) was about a third of the policy's cost per request. A request whose policy and facts
/// match reuses it; any other request makes its own and takes the place.
#[derive(Default)]
pub struct PlanCache(Mutex<Option<CachedPlan>>);

struct CachedPlan {
    /// Weak: the policy's allocation stays (so no later policy can have its address), the
    /// policy itself does not.
    policy: Weak<ActivePolicy>,
    facts: FactsKey,
    plan: Arc<Plan>,
}

impl PlanCache {
    fn get(&self, active: &Arc<ActivePolicy>, facts: &RequestFacts<'_>) -> Option<Arc<Plan>> {
        // A panic while holding the lock leaves an `Option`, still consistent.
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = slot.as_ref()?;
        let same = std::ptr::eq(cached.policy.as_ptr(), Arc::as_ptr(active));
        (same && cached.facts.matches(facts)).then(|| Arc::clone(&cached.plan))
    }

    fn put(&self, active: &Arc<ActivePolicy>, facts: &RequestFacts<'_>, plan: &Arc<Plan>) {
        let entry = CachedPlan {
            policy: Arc::downgrade(active),
            facts: FactsKey::new(facts),
            plan: Arc::clone(plan),
        };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(entry);
    }
}

/// A copy starts empty: the cache belongs to one connection.
impl Clone for PlanCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlanCache")
    }
}

pub struct Gate {
    policy: ArcSwap<ActivePolicy>,
    store: Arc<dyn CounterStore>,
    /// Where `on_store_error = "local"` rules are enforced while the shared store fails.
    fallback: Option<Fallback>,
    counters: Counters,
    evidence: Option<EvidenceLog>,
    stream: Option<crate::evidence::stream::EvidenceStream>,
    ids: DecisionIds,
}

struct Counters {
    store_errors: metrics::Counter,
}

impl Gate {
    pub fn new(
        active: ActivePolicy,
        store: Arc<dyn CounterStore>,
        fallback: Option<Fallback>,
        evidence: Option<EvidenceLog>,
    ) -> Self {
        Self {
            policy: ArcSwap::from_pointee(active),
            store,
            fallback,
            evidence,
            stream: None,
            ids: DecisionIds::new(),
            counters: Counters {
                store_errors: metrics::counter!("portcullis_gate_store_failures_total"),
            },
        }
    }

    /// Also sends every evidence record to a Redis Stream.
    pub fn with_stream(mut self, stream: crate::evidence::stream::EvidenceStream) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Swaps in a new policy atomically.
    pub fn swap(&self, active: ActivePolicy) {
        self.policy.store(Arc::new(active));
    }

    pub fn policy_version(&self) -> String {
        self.policy.load().policy.version().to_string()
    }

    pub fn store(&self) -> &Arc<dyn CounterStore> {
        &self.store
    }

    /// Decides one request.
    pub async fn check<B>(
        &self,
        req: &Request<B>,
        info: &ConnInfo,
        fps: &RequestFingerprints<'_>,
    ) -> Pass {
        let active = self.policy.load_full();
        let policy = &active.policy;
        if policy.rules().is_empty() && policy.lists().is_empty() {
            // Nothing to decide: skip the account HMAC and the plan (what `plan` would conclude).
            hot::count_verdict(hot::Verdict::Allow);
            return forward_plain();
        }
        let headers = req.headers();
        let account = extract_api_key(policy.identity(), |name| {
            let name = active.key_headers.iter().find(|n| n.as_str() == name)?;
            headers.get(name).and_then(|v| v.to_str().ok())
        })
        .map(|key| account_id(active.secret.as_bytes(), key));
        let tls = info.tls.as_ref();
        let mut facts = RequestFacts {
            account,
            ip: info.peer.ip(),
            ja3_hash: tls.and_then(|t| t.ja3_hash.to_str().ok()),
            ja4: tls.and_then(|t| t.ja4.to_str().ok()),
            method: req.method().as_str(),
            path: req.uri().path(),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
            header_fp: Some(fps.header.id.as_str()),
            h2_fp: fps.h2.map(|h| h.hash.as_str()),
            claim: None,
            relay: policy.is_relay(tls.and_then(|t| t.rtt.as_ref()).map(|r| r.gap())),
        };
        if !policy.clients().is_empty() {
            facts.claim = policy.claim(&facts, &|name| headers.contains_key(name));
        }
        let signals = signal_headers(&active, &facts);
        let planned = match info.plan_cache.get(&active, &facts) {
            Some(plan) => Ok(plan),
            None => policy.plan(&facts).map(|plan| {
                let plan = Arc::new(plan);
                info.plan_cache.put(&active, &facts, &plan);
                plan
            }),
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(Early::Allow) => {
                hot::count_verdict(hot::Verdict::Allow);
                return forward_with(signals);
            }
            Err(Early::Deny(hit)) => {
                hot::count_verdict(hot::Verdict::Reject);
                debug!(rule = %hit.rule, "deny list");
                let status = match hit.action {
                    crate::policy::Action::Reject { status } => status,
                    _ => 403,
                };
                let mut resp = reject_response(status, None, &hit);
                let id = self.record(
                    &active,
                    &facts,
                    info,
                    req,
                    fps,
                    evidence::verdict::DENY_LIST,
                    status,
                    std::slice::from_ref(&hit),
                );
                insert_id(resp.headers_mut(), &id);
                return Pass::Respond(resp);
            }
        };
        if plan.is_empty() {
            hot::count_verdict(hot::Verdict::Allow);
            return forward_with(signals);
        }
        let evaluated = if plan.ops.is_empty() {
            // Only counter-less hits (match rules): nothing to ask the store.
            Ok(crate::limit::Evaluation {
                outcomes: Vec::new(),
                blocked: false,
                lease: Lease::none(),
            })
        } else if let Some(e) = self.store.evaluate_ready(&plan.ops, &plan.memo) {
            Ok(e)
        } else {
            self.store.evaluate(&plan.ops).await
        };
        let eval = match evaluated {
            Ok(e) => e,
            Err(e) => {
                self.counters.store_errors.increment(1);
                debug!(error = %e, "counter store error; applying each rule's on_store_error");
                match self.on_store_error(policy, &plan).await {
                    StoreFailure::Evaluated(e) => e,
                    StoreFailure::Open => return forward_with(signals),
                    StoreFailure::Closed => {
                        hot::count_verdict(hot::Verdict::Reject);
                        return Pass::Respond(error_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "overloaded_error",
                            "Rate limiting is temporarily unavailable. Please retry.",
                        ));
                    }
                }
            }
        };
        let mut decision: Decision = policy.decide(&plan, &eval);
        for h in &decision.hits {
            // Labels come from the policy file (bounded), never from traffic.
            let shadow = if h.shadow { "true" } else { "false" };
            metrics::counter!("portcullis_rule_hits_total", "rule" => h.rule.to_string(),
                "action" => action_name(h.action), "shadow" => shadow)
            .increment(1);
        }
        let mut response_headers = Vec::new();
        let mut upstream_extra = signals;
        if !decision.hits.is_empty() {
            let (kind, status) = match decision.verdict {
                Verdict::Reject { status, .. } => (evidence::verdict::REJECT, status),
                Verdict::Tarpit(_) => (evidence::verdict::TARPIT, 200),
                _ => (evidence::verdict::FLAG, 200),
            };
            let id = self.record(
                &active,
                &facts,
                info,
                req,
                fps,
                kind,
                status,
                &decision.hits,
            );
            push(
                &mut response_headers,
                const { HeaderName::from_static(evidence::DECISION_ID_HEADER) },
                &id,
            );
            push(
                &mut upstream_extra,
                const { HeaderName::from_static(evidence::DECISION_ID_HEADER) },
                &id,
            );
        }
        if let Some(rl) = decision.ratelimit.take() {
            response_headers.push((
                const { HeaderName::from_static("ratelimit-policy") },
                rl.policy,
            ));
            // The string becomes the value as it is (checked, not copied).
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(rl.ratelimit)) {
                response_headers.push((const { HeaderName::from_static("ratelimit") }, v));
            }
        }
        match decision.verdict {
            Verdict::Allow => {
                hot::count_verdict(hot::Verdict::Allow);
                Pass::Forward {
                    lease: eval.lease,
                    upstream_headers: upstream_extra,
                    response_headers,
                    delay: None,
                }
            }
            Verdict::Flag => {
                hot::count_verdict(hot::Verdict::Flag);
                Pass::Forward {
                    lease: eval.lease,
                    upstream_headers: flag_headers(&decision.hits, upstream_extra),
                    response_headers,
                    delay: None,
                }
            }
            Verdict::Tarpit(d) => {
                hot::count_verdict(hot::Verdict::Tarpit);
                Pass::Forward {
                    lease: eval.lease,
                    upstream_headers: flag_headers(&decision.hits, upstream_extra),
                    response_headers,
                    delay: Some(d),
                }
            }
            Verdict::Reject {
                status,
                retry_after,
            } => {
                hot::count_verdict(hot::Verdict::Reject);
                let hit = decision.hits.iter().find(|h| {
                    !h.shadow && matches!(h.action, crate::policy::Action::Reject { .. })
                });
                let mut resp = match hit {
                    Some(h) => reject_response(status, Some(retry_after), h),
                    None => {
                        error_response(status_code(status), "rate_limit_error", "Rate limited.")
                    }
                };
                for (k, v) in response_headers {
                    resp.headers_mut().insert(k, v);
                }
                Pass::Respond(resp)
            }
        }
    }
}

/// The local budget used while the shared store fails: a local store and the fleet size the
/// shared limits are divided by.
pub struct Fallback {
    pub store: Arc<dyn CounterStore>,
    pub fleet_size: u32,
}

enum StoreFailure {
    /// Every op got an outcome: local-budget ops from the fallback, the others allowed.
    Evaluated(crate::limit::Evaluation),
    /// No enforcing op asked for anything but `open`: forward.
    Open,
    /// An enforcing op's rule says `closed`.
    Closed,
}

/// A limit divided among `n` proxies (never below 1).
fn share(op: &crate::limit::Op, n: u32) -> crate::limit::Op {
    use crate::limit::{Op, Rate};
    let div = |v: u32| v.div_ceil(n).max(1);
    match op.clone() {
        Op::Rate { key, rate, cost } => Op::Rate {
            key,
            rate: Rate {
                emission: rate.emission.saturating_mul(n),
                burst: div(rate.burst),
            },
            cost,
        },
        Op::Concurrency { key, max } => Op::Concurrency { key, max: div(max) },
        Op::Distinct {
            key,
            member,
            max,
            window,
        } => Op::Distinct {
            key,
            member,
            max: div(max),
            window,
        },
    }
}

impl Gate {
    /// Applies each rule's `on_store_error` after the shared store failed.
    async fn on_store_error(&self, policy: &Policy, plan: &crate::policy::Plan) -> StoreFailure {
        use crate::limit::{Evaluation, OpSpec, Outcome};
        use crate::policy::OnStoreError;
        let modes: Vec<OnStoreError> = plan
            .rule_indices()
            .map(|i| {
                policy
                    .rules()
                    .get(i)
                    .map_or(OnStoreError::Open, |r| r.on_store_error())
            })
            .collect();
        let enforced = |i: usize| plan.ops.get(i).is_some_and(|o| o.enforce);
        if modes
            .iter()
            .enumerate()
            .any(|(i, m)| *m == OnStoreError::Closed && enforced(i))
        {
            return StoreFailure::Closed;
        }
        let (Some(fb), true) = (&self.fallback, modes.contains(&OnStoreError::Local)) else {
            return StoreFailure::Open;
        };
        let local: Vec<(usize, OpSpec)> = plan
            .ops
            .iter()
            .zip(&modes)
            .enumerate()
            .filter(|(_, (_, m))| **m == OnStoreError::Local)
            .map(|(i, (spec, _))| {
                (
                    i,
                    OpSpec {
                        op: share(&spec.op, fb.fleet_size.max(1)),
                        enforce: spec.enforce,
                    },
                )
            })
            .collect();
        let specs: Vec<OpSpec> = local.iter().map(|(_, s)| s.clone()).collect();
        let Ok(sub) = fb.store.evaluate(&specs).await else {
            return StoreFailure::Open;
        };
        let mut outcomes = vec![
            Outcome::Allowed {
                remaining: 0,
                reset: Duration::ZERO,
            };
            plan.ops.len()
        ];
        for ((i, _), o) in local.iter().zip(sub.outcomes) {
            if let Some(slot) = outcomes.get_mut(*i) {
                *slot = o;
            }
        }
        StoreFailure::Evaluated(Evaluation {
            outcomes,
            blocked: sub.blocked,
            lease: sub.lease,
        })
    }
}

fn forward_plain() -> Pass {
    forward_with(Vec::new())
}

fn forward_with(upstream_headers: Vec<(HeaderName, HeaderValue)>) -> Pass {
    Pass::Forward {
        lease: Lease::none(),
        upstream_headers,
        response_headers: Vec::new(),
        delay: None,
    }
}

/// The claimed client, the layers that contradict it, and the relay verdict, for the
/// upstream (only what the policy could tell: no clients, no claim headers).
/// Also counts the claim.
fn signal_headers(active: &ActivePolicy, f: &RequestFacts<'_>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some((c, s)) = f
        .claim
        .and_then(|c| Some((c, active.clients.get(c.client)?)))
    {
        out.push((HeaderName::from_static(CLAIM_HEADER), s.name.clone()));
        if c.is_mismatch() {
            s.mismatched.increment(1);
            push(
                &mut out,
                const { HeaderName::from_static(CLAIM_MISMATCH_HEADER) },
                &c.mismatch.join(),
            );
        } else {
            s.matched.increment(1);
        }
    }
    if let Some(relay) = f.relay {
        let v = if relay { "relay" } else { "direct" };
        out.push((
            HeaderName::from_static(RELAY_HEADER),
            HeaderValue::from_static(v),
        ));
    }
    out
}

/// `name` from a constant (`const { HeaderName::from_static(..) }`): checked at compile time,
/// not on every request.
fn push(out: &mut Vec<(HeaderName, HeaderValue)>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::try_from(value) {
        out.push((name, v));
    }
}

fn flag_headers(
    hits: &[Hit],
    mut out: Vec<(HeaderName, HeaderValue)>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut names: Vec<&str> = hits.iter().map(|h| &*h.rule).collect();
    names.dedup();
    push(
        &mut out,
        const { HeaderName::from_static(FLAG_HEADER) },
        &names.join(","),
    );
    out
}

fn insert_id(h: &mut http::HeaderMap, id: &str) {
    if let Ok(v) = HeaderValue::try_from(id) {
        h.insert(HeaderName::from_static(evidence::DECISION_ID_HEADER), v);
    }
}

fn action_name(a: crate::policy::Action) -> &'static str {
    match a {
        crate::policy::Action::Reject { .. } => "reject",
        crate::policy::Action::Flag => "flag",
        crate::policy::Action::Tarpit(_) => "tarpit",
    }
}

impl Gate {
    /// Writes one evidence record (if a log is configured) and returns its decision id.
    #[allow(clippy::too_many_arguments)]
    fn record<B>(
        &self,
        active: &ActivePolicy,
        facts: &RequestFacts<'_>,
        info: &ConnInfo,
        req: &Request<B>,
        fps: &RequestFingerprints<'_>,
        verdict: &str,
        status: u16,
        hits: &[Hit],
    ) -> String {
        let id = self.ids.next_id();
        if self.evidence.is_none() && self.stream.is_none() {
            return id;
        }
        let policy = &active.policy;
        let ip = crate::policy::identity::canonical_ip(facts.ip);
        let prefix = policy.identity().default_prefix(ip);
        let tls = info.tls.as_ref();
        let text = |v: &HeaderValue| v.to_str().ok().map(str::to_string);
        let rec = Record {
            v: evidence::SCHEMA_VERSION,
            ts: evidence::timestamp(std::time::SystemTime::now()),
            decision_id: id.clone(),
            policy_version: policy.version().to_string(),
            verdict: verdict.to_string(),
            peer: ip.to_string(),
            subnet: crate::policy::identity::subnet(ip, prefix).to_string(),
            account: facts.account.map(|a| a.to_string()),
            sni: tls.and_then(|t| t.sni.clone()),
            alpn: tls.and_then(|t| t.alpn.clone()),
            ja3: tls.and_then(|t| text(&t.ja3)),
            ja3_hash: tls.and_then(|t| text(&t.ja3_hash)),
            ja4: tls.and_then(|t| text(&t.ja4)),
            ja4_r: tls.and_then(|t| text(&t.ja4_r)),
            header_fp: Some(fps.header.id.clone()),
            h2_fp: fps.h2.map(|h| h.akamai.clone()),
            ja4h: fps.ja4h.clone(),
            user_agent: facts.user_agent.map(str::to_string),
            claim: facts.claim.map(|c| policy.client_name(&c).to_string()),
            claim_mismatch: facts
                .claim
                .map(|c| c.mismatch.names().map(str::to_string).collect())
                .unwrap_or_default(),
            tcp_rtt_us: tls.and_then(|t| t.rtt.as_ref()).map(|r| micros(r.tcp)),
            tls_rtt_us: tls.and_then(|t| t.rtt.as_ref()).map(|r| micros(r.tls)),
            relay: facts.relay,
            method: req.method().as_str().to_string(),
            path: req.uri().path().to_string(),
            status,
            hits: hits
                .iter()
                .map(|h| HitRecord {
                    rule: h.rule.to_string(),
                    layer_key: h.layer_key.clone(),
                    current: h.current,
                    limit: h.limit,
                    action: action_name(h.action).to_string(),
                    shadow: h.shadow,
                    retry_after_ms: u64::try_from(h.retry_after.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
        };
        if let Some(stream) = &self.stream {
            if let Ok(json) = serde_json::to_string(&rec) {
                stream.send(json);
            }
        }
        if let Some(log) = &self.evidence {
            log.record(rec);
        }
        id
    }

    /// The evidence log, for graceful shutdown.
    pub fn evidence(&self) -> Option<&EvidenceLog> {
        self.evidence.as_ref()
    }
}

fn status_code(s: u16) -> StatusCode {
    StatusCode::from_u16(s).unwrap_or(StatusCode::TOO_MANY_REQUESTS)
}

/// A rejection in the model API's error shape, with `Retry-After` in whole seconds (rounded up).
fn reject_response(status: u16, retry_after: Option<Duration>, hit: &Hit) -> Response<ProxyBody> {
    let code = status_code(status);
    let kind = match code {
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
        StatusCode::FORBIDDEN => "permission_error",
        _ => "api_error",
    };
    let msg = if code == StatusCode::TOO_MANY_REQUESTS {
        "Rate limit exceeded. Please retry later."
    } else {
        "Request not permitted."
    };
    let mut resp = error_response(code, kind, msg);
    if let Some(ra) = retry_after {
        let secs = ra.as_secs() + u64::from(ra.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    debug!(rule = %hit.rule, layer = %hit.layer_key, current = hit.current, limit = hit.limit, "rejected");
    resp
}
