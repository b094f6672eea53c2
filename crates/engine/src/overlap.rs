//! A second thread that a long-lived engine (the service's) keeps, so that
//! the parts of a command that do not depend on each other run at once:
//! the kernel making an endpoint's links while the store records it, for
//! one. A command process does not start one: starting a thread costs
//! about as much as what it could save there.
//!
//! [`Helper::both`] runs one closure on the helper thread and another on
//! the calling thread and returns when both are done. The closures may
//! borrow from the caller, as with [`std::thread::scope`], but no thread is
//! started per call: waking a thread that waits is a tenth of the cost.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

enum Job {
    Run(Box<dyn FnOnce() + Send + 'static>),
    /// Wait for the next job awake (see [`Helper::get_ready`]).
    GetReady,
}

/// How long the helper stays awake after [`Helper::get_ready`].
const AWAKE: Duration = Duration::from_millis(1);

/// How long the caller of [`Helper::both`] waits awake for the helper's
/// side before it sleeps.
const WAIT_AWAKE: Duration = Duration::from_millis(1);

/// The helper thread. Dropping it ends the thread once its job is done.
/// A clone is another handle on the same thread.
#[derive(Clone)]
pub struct Helper {
    jobs: Sender<Job>,
    place: Option<Arc<Placement>>,
}

/// Where the helper may run. Woken by a thread that then goes on working,
/// it is often queued on that thread's CPU (the waker's cache is warm)
/// and waits there until the waker sleeps, with the other CPU idle: no
/// overlap at all. So it is kept off the CPU of whoever hands it work.
struct Placement {
    /// The helper thread's id.
    tid: nix::unistd::Pid,
    /// The CPUs this process may use (two or more).
    allowed: nix::sched::CpuSet,
    /// The CPU the helper is kept off now (-1: none yet).
    avoided: AtomicI32,
}

impl Placement {
    fn keep_off(&self, cpu: usize) {
        if self.avoided.swap(cpu as i32, Ordering::Relaxed) == cpu as i32 {
            return;
        }
        let mut set = self.allowed;
        if set.unset(cpu).is_ok() {
            // At worst the helper runs where the scheduler puts it.
            let _ = nix::sched::sched_setaffinity(self.tid, &set);
        }
    }
}

/// Where the helper leaves a job's result (or its panic).
struct Packet<R> {
    result: Mutex<Option<Result<R, Box<dyn Any + Send>>>>,
    /// Set once `result` holds it, for a waiter that has not slept.
    ready: AtomicBool,
    done: Condvar,
}

impl<R> Packet<R> {
    fn wait(&self) -> Result<R, Box<dyn Any + Send>> {
        // The other side usually ends within a few hundred microseconds;
        // a sleeping waiter would add the time it takes to be woken.
        let until = Instant::now() + WAIT_AWAKE;
        while !self.ready.load(Ordering::Acquire) && Instant::now() < until {
            std::thread::yield_now();
        }
        let mut slot = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = self.done.wait(slot).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Waits for the helper's job when dropped: the job borrows from the
/// caller's frame, so that frame may not end (by return or by unwinding)
/// while the job runs.
struct Joined<'p, R> {
    packet: &'p Packet<R>,
}

impl<R> Joined<'_, R> {
    fn result(self) -> R {
        let r = self.packet.wait();
        std::mem::forget(self);
        match r {
            Ok(v) => v,
            Err(p) => panic::resume_unwind(p),
        }
    }
}

impl<R> Drop for Joined<'_, R> {
    fn drop(&mut self) {
        drop(self.packet.wait());
    }
}

impl Helper {
    /// Starts the helper thread.
    pub fn start() -> std::io::Result<Helper> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (tid_tx, tid_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("helper".into())
            .spawn(move || {
                let _ = tid_tx.send(nix::unistd::gettid());
                for job in &queue {
                    match job {
                        Job::Run(f) => f(),
                        Job::GetReady => {
                            let until = Instant::now() + AWAKE;
                            while Instant::now() < until {
                                match queue.try_recv() {
                                    Ok(Job::Run(f)) => {
                                        f();
                                        break;
                                    }
                                    Ok(Job::GetReady) => {}
                                    Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
                                    Err(mpsc::TryRecvError::Disconnected) => return,
                                }
                            }
                        }
                    }
                }
            })?;
        let place = match (
            tid_rx.recv(),
            nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)),
        ) {
            (Ok(tid), Ok(allowed))
                if (0..nix::sched::CpuSet::count())
                    .filter(|&c| allowed.is_set(c).unwrap_or(false))
                    .count()
                    >= 2 =>
            {
                Some(Arc::new(Placement {
                    tid,
                    allowed,
                    avoided: AtomicI32::new(-1),
                }))
            }
            _ => None,
        };
        Ok(Helper { jobs, place })
    }

    /// Wakes the helper now for a job that follows shortly: it then waits
    /// for it awake (for up to 1 ms) instead of asleep. Waking a thread
    /// whose CPU idles takes tens of microseconds, which the caller's own
    /// work before [`Helper::both`] then hides.
    pub fn get_ready(&self) {
        self.keep_off_this_cpu();
        let _ = self.jobs.send(Job::GetReady);
    }

    fn keep_off_this_cpu(&self) {
        if let (Some(place), Ok(cpu)) = (&self.place, nix::sched::sched_getcpu()) {
            place.keep_off(cpu);
        }
    }

    /// Runs `there` on the helper thread while `here` runs on this one,
    /// and returns both results once both have finished. A panic in
    /// either is raised here, after both have finished.
    pub fn both<'a, RT, RH>(
        &self,
        there: impl FnOnce() -> RT + Send + 'a,
        here: impl FnOnce() -> RH,
    ) -> (RT, RH)
    where
        RT: Send + 'a,
    {
        let packet = Arc::new(Packet {
            result: Mutex::new(None),
            ready: AtomicBool::new(false),
            done: Condvar::new(),
        });
        let theirs = Arc::clone(&packet);
        let job: Box<dyn FnOnce() + Send + 'a> = Box::new(move || {
            let r = panic::catch_unwind(AssertUnwindSafe(there));
            *theirs.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
            theirs.ready.store(true, Ordering::Release);
            theirs.done.notify_one();
        });
        // SAFETY: the job borrows for 'a, which lasts at least as long as
        // this call. The call cannot end before the job has run to its
        // end: `Joined` waits for the job's result when it is dropped,
        // whether this frame returns or unwinds, and the result is stored
        // only after `there` and everything it captured are gone. What the
        // job touches after that (the packet) is kept alive by its `Arc`.
        let job = unsafe {
            std::mem::transmute::<Box<dyn FnOnce() + Send + 'a>, Box<dyn FnOnce() + Send + 'static>>(
                job,
            )
        };
        self.keep_off_this_cpu();
        if let Err(mpsc::SendError(Job::Run(job))) = self.jobs.send(Job::Run(job)) {
            // The helper is gone (it never is while `self` lives): the job
            // runs here, first.
            job();
        }
        let joined = Joined { packet: &packet };
        let mine = here();
        (joined.result(), mine)
    }
}

#[cfg(test)]
mod tests {
    use super::Helper;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn both_sides_run_at_once_and_borrow_from_the_caller() {
        let h = Helper::start().unwrap();
        let mut left = vec![1, 2];
        let mut right = [10, 20];
        // Each side waits for the other: this ends only if they overlap.
        let met = AtomicUsize::new(0);
        let meet = || {
            met.fetch_add(1, Ordering::SeqCst);
            while met.load(Ordering::SeqCst) < 2 {
                std::thread::yield_now();
            }
        };
        let (a, b) = h.both(
            || {
                meet();
                left.push(3);
                std::thread::current().name().map(str::to_owned)
            },
            || {
                meet();
                right[0] += 1;
                std::thread::current().name().map(str::to_owned)
            },
        );
        assert_eq!(a.as_deref(), Some("helper"));
        assert_ne!(b.as_deref(), Some("helper"));
        assert_eq!(left, [1, 2, 3]);
        assert_eq!(right, [11, 20]);
    }

    #[test]
    fn a_panic_on_either_side_comes_out_here_after_both_are_done() {
        let h = Helper::start().unwrap();
        let finished = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.both(
                || {
                    std::thread::sleep(Duration::from_millis(50));
                    finished.fetch_add(1, Ordering::SeqCst);
                },
                || panic!("here"),
            )
        }));
        assert!(r.is_err());
        // The helper's side had finished before the panic left `both`.
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.both(
                || panic!("there"),
                || finished.fetch_add(1, Ordering::SeqCst),
            )
        }));
        let msg = r.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"there"));
        assert_eq!(finished.load(Ordering::SeqCst), 2);
        // And the helper still serves.
        assert_eq!(h.both(|| 1, || 2), (1, 2));
    }
}
