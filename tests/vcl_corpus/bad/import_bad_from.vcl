# expect: 3:12: Expected 'from path ...'
vcl 4.1;
import std to "x";
backend default { .host = "127.0.0.1"; }
