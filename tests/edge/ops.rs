//! The operations kit, checked against a live gateway: placeholder until the kit lands.
