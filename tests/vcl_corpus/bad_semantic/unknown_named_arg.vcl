# expect: 6:29: Unknown argument 'nope'
vcl 4.1;
import std;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    std.collect(req.http.x, nope = ",");
}
