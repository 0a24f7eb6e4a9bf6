# ACL entry forms and flags; import forms.
vcl 4.1;

import std;
import directors from "/usr/lib/x86_64-linux-gnu/varnish/vmods/libvmod_directors.so";

backend default { .host = "127.0.0.1"; .port = "8080"; }

acl everything +log -pedantic +table {
    "localhost";
    "127.0.0.1";
    "::1";
    "10.0.0.0"/8;
    "172.16.0.0/12";
    "192.168.0.0" / 16;
    !"192.168.1.1";
    ! "192.168.1.2";
    ("unresolvable.invalid");
    !("unresolvable2.invalid");
    (!"unresolvable3.invalid");
    "fe80::"/10;
}

sub vcl_recv {
    if (client.ip ~ everything || server.ip ~ everything || remote.ip ~ everything ||
        local.ip ~ everything) {
        std.log("match");
    }
}
