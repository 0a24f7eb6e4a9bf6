# expect: 5:6: Field 'host' redefined at:
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .host = "127.0.0.2";
}
