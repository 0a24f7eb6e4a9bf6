# expect: 5:41: Must specify .expected_response with exactly three digits (100 <= x <= 999)
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .probe = { .expected_response = 1000; }
}
