# expect: 1:1: VCL version declaration missing
