# expect: 6:5: 'std.syslog' is not supported by ringcache
vcl 4.1;
import std;
backend default { .host = "127.0.0.1"; .port = "8080"; }
sub vcl_recv {
    std.syslog(6, "hello");
}
