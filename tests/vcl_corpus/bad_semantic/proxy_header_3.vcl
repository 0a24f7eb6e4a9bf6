# expect: 5:21: .proxy_header must be 1 or 2
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .proxy_header = 3;
}
