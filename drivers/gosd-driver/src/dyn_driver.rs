//! [`DynDriver`]: the object-safe form of [`Driver`], for a driver chosen
//! at run time. Each call boxes the future the driver's `async fn` makes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::{
    Driver, DriverError, EventSink, Fetched, Finding, InstanceName, Meta, Renewal, Snapshot,
    Version,
};

/// A boxed, sendable future: what [`DynDriver`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Driver`], implemented for every `Driver`. Use it
/// to hold a driver chosen at run time as `Arc<dyn DynDriver>`.
#[allow(missing_docs)] // each method is documented on `Driver`
pub trait DynDriver: Send + Sync + 'static {
    fn backend(&self) -> String;
    fn register<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, DriverError>>;
    fn renew<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Renewal, DriverError>>;
    fn register_with<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
        meta: &'a Meta,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, DriverError>>;
    fn renew_with<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
        meta: &'a Meta,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Renewal, DriverError>>;
    fn deregister<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
    ) -> BoxFuture<'a, Result<bool, DriverError>>;
    fn fetch(&self, known: Option<Version>) -> BoxFuture<'_, Result<Fetched, DriverError>>;
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, DriverError>>;
    fn watch(&self, sink: EventSink) -> BoxFuture<'_, Result<(), DriverError>>;
    fn leases(&self) -> BoxFuture<'_, Result<Vec<(String, Duration)>, DriverError>>;
    fn remove_stale<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<usize, DriverError>>;
    fn diagnose(&self) -> BoxFuture<'_, Result<Vec<Finding>, DriverError>>;
}

impl<D: Driver> DynDriver for D {
    fn backend(&self) -> String {
        Driver::backend(self)
    }
    fn register<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, DriverError>> {
        Box::pin(Driver::register(self, name, url, ttl))
    }
    fn renew<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Renewal, DriverError>> {
        Box::pin(Driver::renew(self, name, url, ttl))
    }
    fn register_with<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
        meta: &'a Meta,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, DriverError>> {
        Box::pin(Driver::register_with(self, name, url, meta, ttl))
    }
    fn renew_with<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
        meta: &'a Meta,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Renewal, DriverError>> {
        Box::pin(Driver::renew_with(self, name, url, meta, ttl))
    }
    fn deregister<'a>(
        &'a self,
        name: &'a InstanceName,
        url: &'a str,
    ) -> BoxFuture<'a, Result<bool, DriverError>> {
        Box::pin(Driver::deregister(self, name, url))
    }
    fn fetch(&self, known: Option<Version>) -> BoxFuture<'_, Result<Fetched, DriverError>> {
        Box::pin(Driver::fetch(self, known))
    }
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, DriverError>> {
        Box::pin(Driver::snapshot(self))
    }
    fn watch(&self, sink: EventSink) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(Driver::watch(self, sink))
    }
    fn leases(&self) -> BoxFuture<'_, Result<Vec<(String, Duration)>, DriverError>> {
        Box::pin(Driver::leases(self))
    }
    fn remove_stale<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<usize, DriverError>> {
        Box::pin(Driver::remove_stale(self, url))
    }
    fn diagnose(&self) -> BoxFuture<'_, Result<Vec<Finding>, DriverError>> {
        Box::pin(Driver::diagnose(self))
    }
}
