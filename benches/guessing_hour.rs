//! How many passwords one address may try against one user name, retrying the moment each
//! refusal's Retry-After allows, under the default login limits: the real `LoginGuard`, on a
//! clock moved by hand (an hour takes milliseconds). A unit test asserts the first hour's count.
//!
//! Run: `cargo bench --bench guessing_hour`

use authgate::auth::guard::LoginGuard;
use authgate::clock::{Clock, ManualClock};
use authgate::config::LoginLimitsConfig;
use std::sync::Arc;

fn main() {
    let clock = Arc::new(ManualClock::new());
    let guard = LoginGuard::new(&LoginLimitsConfig::default(), clock.clone());
    let attacker = Some("203.0.113.1".parse().unwrap());
    let start = clock.now_ms();
    let (mut attempts, mut reported_hours) = (0u64, 0u64);
    println!("guessing_hour: one address, one user name, default login_limits");
    while reported_hours < 24 {
        match guard.admit(attacker, "admin") {
            Ok(()) => {
                attempts += 1;
                guard.failed(attacker, "admin");
            }
            Err(limited) => clock.advance(limited.retry_after),
        }
        let hours = (clock.now_ms() - start) / 3_600_000;
        if hours > reported_hours {
            reported_hours = hours;
            if [1, 2, 6, 24].contains(&hours) {
                println!("guessing_hour: after {hours:>2} h: {attempts} attempts");
            }
        }
    }
}
