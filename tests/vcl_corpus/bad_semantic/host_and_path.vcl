# expect: 5:6: Address redefinition at:
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .path = "/tmp/x.sock";
}
