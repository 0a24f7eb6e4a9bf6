# expect: 3:5: Name of subroutine, 'my.sub', contains illegal character '.'
vcl 4.1;
sub my.sub { }
backend default { .host = "127.0.0.1"; }
