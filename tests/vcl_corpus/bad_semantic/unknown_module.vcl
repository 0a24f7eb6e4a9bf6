# expect: 3:8: Could not find VMOD nosuch
vcl 4.1;
import nosuch;
backend default { .host = "127.0.0.1"; }
