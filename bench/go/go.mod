module tally/bench

go 1.19
