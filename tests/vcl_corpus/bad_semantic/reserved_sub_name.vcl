# expect: 4:5: The names 'vcl_*' are reserved for subroutines.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_foo {
}
