# expect: 4:5: Unused sub foo, defined:
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub foo {
}
