//! Which instance an attempt goes to, and what attempts taught about each instance.
//!
//! A [`Picker`] per service keeps one compact [`Slot`] per instance of the list discovery last
//! gave it, in the list's order, rebuilt (each instance's numbers carried over by id) only when
//! discovery hands over a new list. Choosing an instance and recording how the attempt went then
//! touch a few contiguous cache lines rather than a hash map keyed by id: on a VM whose idle
//! vCPUs halt between calls most of those lines are misses, and they cost more than the
//! instructions (`BENCHMARKS.md`, the `msakit` SDK). Each instance's URL is parsed once and its
//! last path's URL kept ([`UrlCache`]), apart from the slots, since only the chosen one is read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use msakit_api::registry::{Instance, InstanceStatus, Scheme};

use crate::service_client::{Balancer, ServiceClientOptions};

/// How an attempt ended, as the balancer counts it: a failure (a 5xx, a 429, a transport
/// error or a timeout) moves the instance towards ejection; anything else resets its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptEnd {
    /// The instance answered, and not with a failure.
    Succeeded,
    /// The attempt failed.
    Failed,
}

/// One service's balancer: slots for the instances of the last list seen, and the instances
/// that left it while still busy or ejected.
#[derive(Debug, Default)]
pub(crate) struct Picker {
    /// The list the slots were built from, recognised by pointer.
    source: Option<Arc<Vec<Instance>>>,
    /// Discovery's generation when `source` was last confirmed current: while discovery is
    /// still at it, a call takes `source` without asking discovery (see
    /// [`Picker::current_instances`]).
    seen: Option<u64>,
    /// One per instance of `source`, in its order.
    slots: Vec<Slot>,
    /// The instances' URLs, beside `slots`.
    urls: Vec<UrlCache>,
    /// Instances that left the list with calls in flight or an ejection running, by id, until
    /// neither; taken back if they return.
    departed: Vec<(String, Slot)>,
    /// Counts rebuilds, so [`Picker::finish`] knows whether a ticket's index still holds.
    generation: u64,
    /// The round-robin position.
    next: usize,
}

/// What attempts taught about one instance.
#[derive(Debug, Clone)]
struct Slot {
    /// Peak-EWMA latency in microseconds.
    ewma_us: f64,
    last_update: Instant,
    in_flight: u32,
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    /// UP, and in this service's zone when any UP instance is (fixed per list).
    eligible: bool,
    weight: u32,
    /// Never picked yet: it costs nothing, so a new instance wins its first comparison.
    fresh: bool,
}

/// Where a picked instance's slot was, for [`Picker::finish`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    index: usize,
    generation: u64,
}

/// What [`Picker::pick`] chose: the instance's index in the list, its URL for the path (`None`
/// when no valid URL can be made of its address) and the ticket to finish with.
pub(crate) struct Picked {
    pub index: usize,
    pub url: Option<reqwest::Url>,
    pub ticket: Ticket,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Self {
            ewma_us: 1_000.0,
            last_update: now,
            in_flight: 0,
            consecutive_failures: 0,
            ejections: 0,
            ejected_until: None,
            eligible: false,
            weight: 1,
            fresh: true,
        }
    }

    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| t > now)
    }

    /// Peak EWMA (Finagle): a slower sample counts at once, faster ones decay in over ~10 s.
    fn observe(&mut self, latency: Duration, now: Instant) {
        let sample = latency.as_secs_f64() * 1e6;
        let elapsed = now
            .saturating_duration_since(self.last_update)
            .as_secs_f64();
        self.last_update = now;
        if sample > self.ewma_us {
            self.ewma_us = sample;
        } else {
            let weight = (-elapsed / 10.0).exp();
            self.ewma_us = self.ewma_us * weight + sample * (1.0 - weight);
        }
    }

    /// The load-weighted latency, decayed toward zero since the last sample (as Finagle's peak
    /// EWMA does at read time), so an instance that was slow is probed again after a while
    /// rather than starved for ever.
    fn cost(&self, now: Instant) -> f64 {
        if self.fresh {
            return 0.0;
        }
        let idle = now
            .saturating_duration_since(self.last_update)
            .as_secs_f64();
        self.ewma_us * (-idle / 10.0).exp() * f64::from(self.in_flight + 1)
    }
}

impl Picker {
    /// The instances of the last pick, if discovery's `generation` has not moved since.
    pub(crate) fn current_instances(&self, generation: u64) -> Option<Arc<Vec<Instance>>> {
        self.source
            .as_ref()
            .filter(|_| self.seen == Some(generation))
            .map(Arc::clone)
    }

    /// Chooses an instance of `instances` (discovery's list at `generation`) for `path`:
    /// untried and not ejected first, then untried but ejected, then tried ones; among the best
    /// of those, by `balancer`. `None` when no instance is eligible.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pick(
        &mut self,
        instances: &Arc<Vec<Instance>>,
        generation: u64,
        zone: Option<&str>,
        balancer: Balancer,
        tried: &Tried,
        path: &str,
        now: Instant,
    ) -> Option<Picked> {
        if !self
            .source
            .as_ref()
            .is_some_and(|source| Arc::ptr_eq(source, instances))
        {
            self.rebuild(instances, zone, now);
        }
        self.seen = Some(generation);
        let tier = |index: usize, slot: &Slot| {
            u8::from(tried.contains(&instances[index].id)) * 2 + u8::from(slot.ejected(now))
        };
        // One pass: the best tier, how many share it and the first of them.
        let (mut best, mut n, mut first) = (u8::MAX, 0, 0);
        for (index, slot) in self.slots.iter().enumerate() {
            if !slot.eligible {
                continue;
            }
            let t = tier(index, slot);
            if t < best {
                (best, n, first) = (t, 1, index);
            } else if t == best {
                n += 1;
            }
        }
        // The k-th candidate of the best tier, walking the slots again (only when several).
        let candidates = || {
            self.slots
                .iter()
                .enumerate()
                .filter(move |(index, slot)| slot.eligible && tier(*index, slot) == best)
        };
        let nth = |k: usize| candidates().nth(k).map_or(first, |(index, _)| index);
        let chosen = match (n, balancer) {
            (0, _) => return None,
            (1, _) => first,
            (_, Balancer::PowerOfTwoChoices) => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (nth(a), nth(b));
                if self.slots[a].cost(now) <= self.slots[b].cost(now) {
                    a
                } else {
                    b
                }
            }
            (_, Balancer::RoundRobin) => {
                let k = self.next % n;
                self.next = self.next.wrapping_add(1);
                nth(k)
            }
            (_, Balancer::Random) => nth(fastrand::usize(..n)),
            (_, Balancer::Weighted) => {
                let total: u64 = candidates()
                    .map(|(_, slot)| u64::from(slot.weight.max(1)))
                    .sum();
                let mut ticket = fastrand::u64(..total);
                let mut chosen = first;
                for (index, slot) in candidates() {
                    let weight = u64::from(slot.weight.max(1));
                    if ticket < weight {
                        chosen = index;
                        break;
                    }
                    ticket -= weight;
                }
                chosen
            }
        };
        let slot = &mut self.slots[chosen];
        slot.in_flight += 1;
        slot.fresh = false;
        Some(Picked {
            index: chosen,
            url: self.urls[chosen].url(&instances[chosen], path),
            ticket: Ticket {
                index: chosen,
                generation: self.generation,
            },
        })
    }

    /// Records how an attempt on instance `id` went; ejects it after repeated failures (never
    /// more than `max_ejected_share` of the instances). Answers how long, when it ejects.
    pub(crate) fn finish(
        &mut self,
        ticket: Ticket,
        id: &str,
        latency: Duration,
        end: AttemptEnd,
        now: Instant,
        options: &ServiceClientOptions,
    ) -> Option<Duration> {
        let (slot, listed) = self.slot(ticket, id)?;
        slot.in_flight = slot.in_flight.saturating_sub(1);
        slot.observe(latency, now);
        if end == AttemptEnd::Succeeded {
            slot.consecutive_failures = 0;
            return None;
        }
        slot.consecutive_failures += 1;
        // An instance no longer listed takes no traffic to eject it from.
        let index = listed?;
        if self.slots[index].consecutive_failures < options.eject_after_failures {
            return None;
        }
        self.eject(index, now, options)
    }

    /// Forgets an attempt that was dropped before it finished (its call was cancelled): it is
    /// no longer in flight, and taught nothing.
    pub(crate) fn cancel(&mut self, ticket: Ticket, id: &str) {
        if let Some((slot, _)) = self.slot(ticket, id) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
    }

    /// The slot of the instance a ticket was given for, and its index when it is still listed.
    fn slot(&mut self, ticket: Ticket, id: &str) -> Option<(&mut Slot, Option<usize>)> {
        let listed = if ticket.generation == self.generation {
            Some(ticket.index)
        } else {
            // The list changed since the pick: find the instance again.
            self.source
                .as_ref()
                .and_then(|source| source.iter().position(|i| i.id == id))
        };
        match listed {
            Some(index) => Some((self.slots.get_mut(index)?, listed)),
            None => {
                let departed = self.departed.iter_mut().find(|(d, _)| d == id)?;
                Some((&mut departed.1, None))
            }
        }
    }

    /// Ejects the instance at `index` unless that would eject more than `max_ejected_share` of
    /// them; answers for how long.
    #[cold]
    #[inline(never)]
    fn eject(
        &mut self,
        index: usize,
        now: Instant,
        options: &ServiceClientOptions,
    ) -> Option<Duration> {
        // Only now, on the rare way to an ejection, count the instances already ejected.
        // (Those that left the list while ejected count too, as they will when they return.)
        let ejected_now = self
            .slots
            .iter()
            .chain(self.departed.iter().map(|(_, slot)| slot))
            .filter(|s| s.ejected(now))
            .count();
        if ((ejected_now + 1) as f64) > options.max_ejected_share * self.slots.len() as f64 {
            return None;
        }
        let slot = &mut self.slots[index];
        let factor = 1u32 << slot.ejections.min(5);
        let duration = options
            .ejection
            .saturating_mul(factor)
            .min(Duration::from_secs(300));
        slot.ejected_until = Some(now + duration);
        slot.ejections += 1;
        slot.consecutive_failures = 0;
        Some(duration)
    }

    /// New slots for a new list, each instance keeping what was learnt about it.
    #[cold]
    #[inline(never)]
    fn rebuild(&mut self, instances: &Arc<Vec<Instance>>, zone: Option<&str>, now: Instant) {
        let mut known: HashMap<String, (Slot, UrlCache)> = HashMap::default();
        if let Some(source) = self.source.take() {
            let slots = self.slots.drain(..).zip(self.urls.drain(..));
            for (instance, (slot, url)) in source.iter().zip(slots) {
                known.insert(instance.id.clone(), (slot, url));
            }
        }
        for (id, slot) in self.departed.drain(..) {
            known.entry(id).or_insert((slot, UrlCache::default()));
        }
        let up = |i: &Instance| i.status == InstanceStatus::Up;
        let local = zone.is_some() && instances.iter().any(|i| up(i) && i.zone.as_deref() == zone);
        for instance in instances.iter() {
            let (mut slot, url) = known
                .remove(&instance.id)
                .unwrap_or_else(|| (Slot::new(now), UrlCache::default()));
            slot.eligible = up(instance) && (!local || instance.zone.as_deref() == zone);
            slot.weight = instance.weight;
            self.slots.push(slot);
            self.urls.push(url);
        }
        // Kept: those with calls in flight or an ejection running; and, up to a bound, those
        // ejected before, so one that crashes and registers again keeps its growing ejection.
        let bound = self.slots.len() + 16;
        let mut departed: Vec<(String, Slot)> = known
            .into_iter()
            .filter(|(_, (slot, _))| slot.in_flight > 0 || slot.ejections > 0)
            .map(|(id, (slot, _))| (id, slot))
            .collect();
        if departed.len() > bound {
            departed.sort_by_key(|(_, slot)| {
                std::cmp::Reverse((slot.in_flight > 0 || slot.ejected(now), slot.last_update))
            });
            departed.truncate(bound);
        }
        self.departed = departed;
        self.source = Some(Arc::clone(instances));
        self.generation += 1;
    }
}

/// An instance's URLs: its base, parsed once while it keeps its address, and the last path
/// called on it, since calls to a service mostly repeat a few paths and a copy of a URL is
/// cheaper than setting its path and query again.
#[derive(Debug, Default)]
struct UrlCache {
    /// The parsed base URL, with the address it was made from as the registry gave it (the
    /// parser may rewrite a host).
    base: Option<(Address, reqwest::Url)>,
    /// A path and its whole URL.
    last: Option<(String, reqwest::Url)>,
    /// Whether the last call's path missed `last`: it is replaced on a second miss in a row,
    /// so paths that change every call do not pay for keeping it.
    last_missed: bool,
}

/// An instance's address as the registry gave it.
#[derive(Debug, PartialEq)]
struct Address {
    https: bool,
    host: String,
    port: u16,
}

impl UrlCache {
    /// `path` (with its query) on `instance`.
    fn url(&mut self, instance: &Instance, path: &str) -> Option<reqwest::Url> {
        let https = instance.scheme == Scheme::Https;
        let current = self.base.as_ref().is_some_and(|(address, _)| {
            address.https == https && address.port == instance.port && address.host == instance.host
        });
        if !current {
            self.parse_base(instance, https);
        }
        if let Some((last, url)) = &self.last
            && last == path
        {
            self.last_missed = false;
            return Some(url.clone());
        }
        self.with_path(path)
    }

    /// Parses the instance's address as the base URL (again, when the instance moved).
    #[cold]
    #[inline(never)]
    fn parse_base(&mut self, instance: &Instance, https: bool) {
        {
            let host = &instance.host;
            let authority = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{}", instance.port)
            } else {
                format!("{host}:{}", instance.port)
            };
            let scheme = if https { "https" } else { "http" };
            let address = Address {
                https,
                host: host.clone(),
                port: instance.port,
            };
            self.base = reqwest::Url::parse(&format!("{scheme}://{authority}"))
                .ok()
                .map(|url| (address, url));
            self.last = None;
        }
    }

    /// The base URL with `path` and its query set, kept as the last path on a second miss in
    /// a row.
    #[inline(never)]
    fn with_path(&mut self, path: &str) -> Option<reqwest::Url> {
        let mut url = self.base.as_ref()?.1.clone();
        let (path_only, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        url.set_path(path_only);
        url.set_query(query);
        if self.last.is_none() || self.last_missed {
            self.last = Some((path.to_owned(), url.clone()));
            self.last_missed = false;
        } else {
            self.last_missed = true;
        }
        Some(url)
    }
}

/// The instances a call has tried (hashes of their ids), without allocating: a call makes a few
/// attempts; past eight, the oldest are forgotten.
#[derive(Default)]
pub(crate) struct Tried {
    ids: [u64; 8],
    len: usize,
}

impl Tried {
    fn hash(id: &str) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::default().hash_one(id)
    }

    pub(crate) fn push(&mut self, id: &str) {
        self.ids[self.len % self.ids.len()] = Self::hash(id);
        self.len += 1;
    }

    fn contains(&self, id: &str) -> bool {
        if self.len == 0 {
            return false;
        }
        let hash = Self::hash(id);
        self.ids[..self.len.min(self.ids.len())].contains(&hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, port: u16, status: &str, zone: Option<&str>) -> Instance {
        serde_json::from_value(serde_json::json!({
            "id": id, "service": "s", "namespace": "default", "host": "127.0.0.1",
            "port": port, "scheme": "http", "weight": 1, "metadata": {}, "status": status,
            "zone": zone, "reported_status": status, "lease_ttl_ms": 30000,
            "registered_at_ms": 0, "last_renewed_at_ms": 0, "modify_index": 1,
        }))
        .unwrap()
    }

    /// A pick of an untried instance for "/", outside any zone.
    fn pick(
        picker: &mut Picker,
        list: &Arc<Vec<Instance>>,
        generation: u64,
        balancer: Balancer,
        now: Instant,
    ) -> Picked {
        picker
            .pick(
                list,
                generation,
                None,
                balancer,
                &Tried::default(),
                "/",
                now,
            )
            .unwrap()
    }

    /// Finishes a picked attempt on `id` as an instant success.
    fn succeed(picker: &mut Picker, ticket: Ticket, id: &str, now: Instant) {
        picker.finish(
            ticket,
            id,
            Duration::ZERO,
            AttemptEnd::Succeeded,
            now,
            &options(),
        );
    }

    fn options() -> ServiceClientOptions {
        ServiceClientOptions {
            eject_after_failures: 2,
            max_ejected_share: 0.5,
            ..ServiceClientOptions::default()
        }
    }

    #[test]
    fn what_an_instance_taught_survives_a_new_list_and_its_leaving_while_ejected() {
        let now = Instant::now();
        let mut picker = Picker::default();
        let first = Arc::new(vec![
            instance("a", 1, "UP", None),
            instance("b", 2, "UP", None),
        ]);
        // Two failures on "a" eject it; the next picks avoid it.
        let mut failures = 0;
        while failures < 2 {
            let picked = pick(&mut picker, &first, 0, Balancer::RoundRobin, now);
            let id = first[picked.index].id.clone();
            let end = if id == "a" {
                AttemptEnd::Failed
            } else {
                AttemptEnd::Succeeded
            };
            picker.finish(picked.ticket, &id, Duration::ZERO, end, now, &options());
            failures += u32::from(end == AttemptEnd::Failed);
        }
        for _ in 0..4 {
            let picked = pick(&mut picker, &first, 0, Balancer::RoundRobin, now);
            assert_eq!(first[picked.index].id, "b", "a is ejected");
            succeed(&mut picker, picked.ticket, "b", now);
        }
        // A new list without "a", then with it again: still ejected.
        let without = Arc::new(vec![instance("b", 2, "UP", None)]);
        let picked = pick(&mut picker, &without, 1, Balancer::RoundRobin, now);
        succeed(&mut picker, picked.ticket, "b", now);
        let again = Arc::new(vec![
            instance("a", 1, "UP", None),
            instance("b", 2, "UP", None),
        ]);
        for _ in 0..4 {
            let picked = pick(&mut picker, &again, 2, Balancer::RoundRobin, now);
            assert_eq!(again[picked.index].id, "b", "a came back still ejected");
            succeed(&mut picker, picked.ticket, "b", now);
        }
        // Once its ejection is over, it takes calls again.
        let later = now + Duration::from_secs(301);
        let ids: Vec<&str> = (0..4)
            .map(|_| {
                let picked = pick(&mut picker, &again, 2, Balancer::RoundRobin, later);
                let id = again[picked.index].id.as_str();
                succeed(&mut picker, picked.ticket, id, later);
                id
            })
            .collect();
        assert!(ids.contains(&"a"), "{ids:?}");
    }

    #[test]
    fn a_call_finished_after_the_list_changed_counts_for_its_instance() {
        let now = Instant::now();
        let mut picker = Picker::default();
        let first = Arc::new(vec![instance("a", 1, "UP", None)]);
        let picked = pick(&mut picker, &first, 0, Balancer::RoundRobin, now);
        // The list changes (a new instance first) while the call is in flight.
        let second = Arc::new(vec![
            instance("0", 9, "UP", None),
            instance("a", 1, "UP", None),
        ]);
        pick(&mut picker, &second, 1, Balancer::RoundRobin, now);
        assert_eq!(picker.slots[1].in_flight, 1, "a's call still in flight");
        picker.finish(
            picked.ticket,
            "a",
            Duration::from_millis(5),
            AttemptEnd::Succeeded,
            now,
            &options(),
        );
        assert_eq!(picker.slots[1].in_flight, 0);
        assert_eq!(picker.slots[1].ewma_us, 5_000.0);
    }

    #[test]
    fn a_cancelled_attempt_is_no_longer_in_flight_and_teaches_nothing() {
        let now = Instant::now();
        let mut picker = Picker::default();
        let list = Arc::new(vec![instance("a", 1, "UP", None)]);
        let picked = pick(&mut picker, &list, 0, Balancer::RoundRobin, now);
        assert_eq!(picker.slots[0].in_flight, 1);
        picker.cancel(picked.ticket, "a");
        assert_eq!(picker.slots[0].in_flight, 0);
        assert_eq!(picker.slots[0].ewma_us, 1_000.0, "no latency learnt");
        // Across a list change too, and once only.
        let picked = pick(&mut picker, &list, 0, Balancer::RoundRobin, now);
        let moved = Arc::new(vec![
            instance("0", 9, "UP", None),
            instance("a", 1, "UP", None),
        ]);
        pick(&mut picker, &moved, 1, Balancer::RoundRobin, now);
        picker.cancel(picked.ticket, "a");
        assert_eq!(picker.slots[1].in_flight, 0);
    }

    #[test]
    fn a_new_instance_wins_its_first_comparison_then_pays_for_its_load() {
        let now = Instant::now();
        let mut picker = Picker::default();
        let old = Arc::new(vec![instance("old", 1, "UP", None)]);
        let picked = pick(&mut picker, &old, 0, Balancer::PowerOfTwoChoices, now);
        picker.finish(
            picked.ticket,
            "old",
            Duration::from_micros(100),
            AttemptEnd::Succeeded,
            now,
            &options(),
        );
        let both = Arc::new(vec![
            instance("new", 2, "UP", None),
            instance("old", 1, "UP", None),
        ]);
        let first = pick(&mut picker, &both, 1, Balancer::PowerOfTwoChoices, now);
        assert_eq!(
            both[first.index].id, "new",
            "a fresh instance costs nothing"
        );
        // Picked once and still busy, it now weighs in at its (guessed) latency times its load.
        let second = pick(&mut picker, &both, 1, Balancer::PowerOfTwoChoices, now);
        assert_eq!(both[second.index].id, "old");
    }

    #[test]
    fn ejections_of_instances_that_left_count_toward_the_share() {
        let now = Instant::now();
        let mut picker = Picker::default();
        let ids = ["a", "b", "c", "d"];
        let list = Arc::new(
            ids.iter()
                .enumerate()
                .map(|(port, id)| instance(id, port as u16 + 1, "UP", None))
                .collect::<Vec<_>>(),
        );
        let fail_until_ejected = |picker: &mut Picker, list: &Arc<Vec<Instance>>, g, id: &str| {
            let mut ejected = None;
            for _ in 0..64 {
                let picked = pick(picker, list, g, Balancer::RoundRobin, now);
                let this = list[picked.index].id.clone();
                let end = if this == id {
                    AttemptEnd::Failed
                } else {
                    AttemptEnd::Succeeded
                };
                let outcome =
                    picker.finish(picked.ticket, &this, Duration::ZERO, end, now, &options());
                if end == AttemptEnd::Failed && outcome.is_some() {
                    ejected = outcome;
                    break;
                }
            }
            ejected
        };
        assert!(fail_until_ejected(&mut picker, &list, 0, "a").is_some());
        // "a" leaves while ejected and "e" takes its place: with a share of 0.5 of four
        // instances, one more ejection is allowed ("b"), not two.
        let next = Arc::new(vec![
            instance("b", 2, "UP", None),
            instance("c", 3, "UP", None),
            instance("d", 4, "UP", None),
            instance("e", 5, "UP", None),
        ]);
        assert!(fail_until_ejected(&mut picker, &next, 1, "b").is_some());
        assert!(fail_until_ejected(&mut picker, &next, 1, "c").is_none());
    }

    #[test]
    fn only_up_instances_in_the_zone_are_picked_while_the_zone_has_one() {
        let now = Instant::now();
        let mut picker = Picker::default();
        // A random untried pick for "/" by a service in zone "z1".
        let mut pick_in_z1 = |list: &Arc<Vec<Instance>>, generation| {
            picker
                .pick(
                    list,
                    generation,
                    Some("z1"),
                    Balancer::Random,
                    &Tried::default(),
                    "/",
                    now,
                )
                .map(|picked| list[picked.index].id.clone())
        };
        let list = Arc::new(vec![
            instance("far", 1, "UP", Some("z2")),
            instance("down", 2, "DOWN", Some("z1")),
            instance("near", 3, "UP", Some("z1")),
        ]);
        for _ in 0..8 {
            assert_eq!(pick_in_z1(&list, 0).as_deref(), Some("near"));
        }
        let far_only = Arc::new(vec![
            instance("far", 1, "UP", Some("z2")),
            instance("down", 2, "DOWN", Some("z1")),
        ]);
        assert_eq!(pick_in_z1(&far_only, 1).as_deref(), Some("far"));
        let none_up = Arc::new(vec![instance("down", 2, "DOWN", Some("z1"))]);
        assert_eq!(pick_in_z1(&none_up, 2), None);
    }

    #[test]
    fn instance_url_is_parsed_once_and_follows_a_moved_instance() {
        let mut cache = UrlCache::default();
        let mut instance = instance("a", 8080, "UP", None);
        let url = cache.url(&instance, "/pay?x=1&y=2").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/pay?x=1&y=2");
        // The same path again comes from the cache; another query does not.
        assert_eq!(cache.url(&instance, "/pay?x=1&y=2").unwrap(), url);
        assert_eq!(cache.last.as_ref().unwrap().0, "/pay?x=1&y=2");
        // One other path leaves the cache as it is; a second miss in a row replaces it.
        assert_eq!(
            cache.url(&instance, "/other").unwrap().as_str(),
            "http://127.0.0.1:8080/other"
        );
        assert_eq!(cache.last.as_ref().unwrap().0, "/pay?x=1&y=2");
        cache.url(&instance, "/other").unwrap();
        assert_eq!(cache.last.as_ref().unwrap().0, "/other");
        assert_eq!(
            cache.url(&instance, "/pay?x=2").unwrap().as_str(),
            "http://127.0.0.1:8080/pay?x=2"
        );
        assert_eq!(
            cache.url(&instance, "/pay").unwrap().as_str(),
            "http://127.0.0.1:8080/pay"
        );
        assert_eq!(
            cache.url(&instance, "/b").unwrap().as_str(),
            "http://127.0.0.1:8080/b"
        );
        instance.port = 9090;
        assert_eq!(
            cache.url(&instance, "/c").unwrap().as_str(),
            "http://127.0.0.1:9090/c"
        );
        instance.host = "::1".into();
        assert_eq!(
            cache.url(&instance, "/d").unwrap().as_str(),
            "http://[::1]:9090/d"
        );
        // A host the parser rewrites is still recognised as the same address.
        instance.host = "Example.COM".into();
        assert_eq!(
            cache.url(&instance, "/e").unwrap().as_str(),
            "http://example.com:9090/e"
        );
        // (Parsing the base again would drop the cached "/e"; one miss keeps it.)
        cache.url(&instance, "/f").unwrap();
        assert_eq!(cache.last.as_ref().unwrap().0, "/e");
    }
}
