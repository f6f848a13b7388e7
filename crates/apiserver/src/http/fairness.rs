//! Per-user fairness: one noisy client cannot starve the others.
//!
//! kube gets there with API Priority and Fairness; this is the simple, explicit version: each
//! user may hold at most a fixed share of a pool's in-flight slots at once. Beyond it the
//! request is refused (the middleware answers 429 with `Retry-After: 1`), leaving the rest of
//! the pool to everyone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// How many requests each user has in flight, and how many they may.
#[derive(Debug)]
pub struct PerUserLimit {
    /// 0 means unlimited.
    per_user: usize,
    /// Only users with requests in flight have an entry, so the map stays as small as the
    /// set of active users.
    inflight: Mutex<HashMap<String, usize>>,
}

impl PerUserLimit {
    /// `per_user == 0` means no limit.
    pub fn new(per_user: usize) -> Self {
        PerUserLimit {
            per_user,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `user`, or `None` when they already hold their share. The slot is given
    /// back when the permit is dropped.
    pub fn try_acquire(self: &Arc<Self>, user: &str) -> Option<UserPermit> {
        if self.per_user == 0 {
            return Some(UserPermit { held: None });
        }
        let mut inflight = self.inflight();
        match inflight.get_mut(user) {
            Some(held) if *held >= self.per_user => return None,
            Some(held) => *held += 1,
            None => {
                inflight.insert(user.to_string(), 1);
            }
        }
        Some(UserPermit {
            held: Some((self.clone(), user.to_string())),
        })
    }

    /// The requests `user` has in flight.
    pub fn in_flight(&self, user: &str) -> usize {
        self.inflight().get(user).copied().unwrap_or(0)
    }

    /// How many users have requests in flight.
    pub fn active_users(&self) -> usize {
        self.inflight().len()
    }

    fn release(&self, user: &str) {
        let mut inflight = self.inflight();
        if let Some(held) = inflight.get_mut(user) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                inflight.remove(user);
            }
        }
    }

    /// The counts stay consistent even if a holder panicked: each update is one statement.
    fn inflight(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One in-flight slot of one user; dropping it gives the slot back.
#[derive(Debug)]
pub struct UserPermit {
    /// `None` when the limit is unlimited (nothing to give back).
    held: Option<(Arc<PerUserLimit>, String)>,
}

impl Drop for UserPermit {
    fn drop(&mut self) {
        if let Some((limit, user)) = &self.held {
            limit.release(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_gets_at_most_their_share() {
        let limit = Arc::new(PerUserLimit::new(2));
        let first = limit.try_acquire("alice").expect("first slot");
        let second = limit.try_acquire("alice").expect("second slot");
        assert!(
            limit.try_acquire("alice").is_none(),
            "a third is over the share"
        );
        assert_eq!(limit.in_flight("alice"), 2);
        // Others are not affected by alice's share being used up.
        let bob = limit.try_acquire("bob").expect("bob's slot");
        assert_eq!(limit.in_flight("bob"), 1);
        drop(first);
        assert_eq!(limit.in_flight("alice"), 1);
        let again = limit
            .try_acquire("alice")
            .expect("a slot given back is free again");
        drop((second, again, bob));
        assert_eq!(limit.in_flight("alice"), 0);
    }

    #[test]
    fn users_leave_the_map_when_their_last_request_ends() {
        let limit = Arc::new(PerUserLimit::new(1));
        let permits: Vec<UserPermit> = (0..100)
            .map(|i| limit.try_acquire(&format!("user-{i}")).expect("slot"))
            .collect();
        assert_eq!(limit.active_users(), 100);
        drop(permits);
        assert_eq!(limit.active_users(), 0);
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = Arc::new(PerUserLimit::new(0));
        let permits: Vec<UserPermit> = (0..1_000)
            .map(|_| limit.try_acquire("alice").expect("unlimited"))
            .collect();
        assert_eq!(permits.len(), 1_000);
        assert_eq!(
            limit.active_users(),
            0,
            "nothing is tracked without a limit"
        );
    }
}
