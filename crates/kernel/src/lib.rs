//! netloom's only door to the kernel: netlink (links, addresses, routes,
//! neighbours), network namespaces, sysctls and nftables.
