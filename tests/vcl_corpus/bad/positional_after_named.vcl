# expect: 6:50: Positional argument after named arguments
vcl 4.1;
import std;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    set req.http.x = std.integer(s = req.http.y, 0);
}
