set datafile separator ','
set terminal pngcairo size 900,600 noenhanced
set key bottom right
set grid
set output 'exp1_budget_sweep.png'
set title 'Budget sweep (kNN, seed 1, random batches of 100)'
set xlabel 'realized cost / best single model cost'
set ylabel 'accuracy / best single model accuracy'
set xrange [0:1.3]
plot for [p in 'per_query threshold ndch ndch_p batch batch_robust batch_gamma'] sprintf("< awk -F, '$1==1 && $2==\"knn\" && $3==\"%s\"' exp1_budget_sweep.csv | sort -t, -k6 -g", p) using 6:8 with linespoints title p, 1 with lines dt 2 lc 'black' title 'best model'
unset xrange
set output 'exp2_batches.png'
set title 'Per-batch predicted spend / cap (kNN, seed 1, N=100, adversarial order, cap 0.5)'
set xlabel 'batch (arrival order)'
set ylabel 'predicted spend / cap'
set key top right
plot for [a in 'batch per_query_matched per_query_safe per_query_guarded'] sprintf("< awk -F, '$1==1 && $2==\"knn\" && $3==100 && $4==\"adversarial\" && $5==0.5 && $6==\"%s\"' exp2_batches.csv", a) using 7:8 with linespoints title a, 1 with lines dt 2 lc 'black' title 'cap'
