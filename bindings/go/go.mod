module minimax

go 1.19
