using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// Writes the nested <c>Kernels</c> class: one matrix-product method per distinct weight shape and
/// the shape-specialized RMSNorm, RoPE, attention and SwiGLU. Loops run over constant bounds; the
/// only bounds check of a kernel is the length check at its entry.
/// </summary>
internal static class KernelEmitter
{
    private const int Width = 8; // floats per Vector256

    /// <summary>
    /// Weight blocks per step of the Q8_0/Q4_0 row loop: 8 integer block sums reduce to one Vector256, so
    /// conversion and scaling cost one instruction per 8 blocks instead of one per block.
    /// </summary>
    private const int StepBlocks = 8;

    /// <summary>
    /// Blocks per group of the runtime's kernel layout of Q8_0/Q4_0 rows (BlockQuantization.KernelGroupBlocks):
    /// each group is the blocks' F16 scales, then their weights.
    /// </summary>
    private const int GroupBlocks = 16;

    public static void Write(SourceWriter w, ForwardPlan plan)
    {
        ModelSpec s = plan.Spec;
        w.Line("/// <summary>");
        w.Line("/// Kernels specialized to this model's shapes. Planner decisions:");
        foreach (MatMulKernel k in plan.MatMuls)
            w.Line($"/// - {k.Name} ({k.Uses}): one token {(k.IsBlockQuantized ? BlockDecodeSummary(k) : k.DecodeRows == 4 ? "4 rows per pass with 2 Vector256 sums each" : $"{k.Accumulators} Vector256 sum(s) per row{(k.DecodeWide ? " (4 Vector512 sums when the CPU has them and W starts a cache line)" : "")}")}; "
                + $"in prefill {k.PrefillRows} row(s) × {plan.TokenTile} tokens per pass over blocks of {k.RowBlock} rows"
                + (k.PrefillSplit ? "." : $", on one thread ({k.Rows} rows are not whole cache lines: a split would share lines)."));
        foreach (MatMulKernel k in plan.MatMuls.Where(k => k.Format != plan.Target.Weights))
            w.Line($"/// - {k.Name} stays {k.Format} although {plan.Target.Weights} was asked for: its {k.Cols} columns do not split into 32-weight blocks.");
        w.Line($"/// - Prefill evaluates up to {plan.PrefillChunk} tokens per sweep through the layers; decode is the same path with one token.");
        w.Line($"/// - Attention: {s.GroupSize} query head(s) per KV head, HeadDim {s.HeadDim} {(s.HeadDim % Width == 0 ? $"= {s.HeadDim / Width} Vector256" : "(scalar: not a multiple of 8)")}; "
            + (s.GroupSize > 1 ? "one pass over each KV head's keys and values serves its whole group."
                : s.HeadDim % Width == 0 && s.HeadDim / Width <= 8 ? "each head's output sums stay in registers across the positions." : "outputs accumulate in memory (too wide for registers)."));
        w.Line($"/// - Threads: a call is split by rows (by token × KV head for attention) across the session's worker pool when it has at least");
        w.Line($"///   {plan.ParallelWork} multiply-adds; smaller calls run on the calling thread, where splitting would cost more than it saves.");
        w.Line($"///   Row ranges are multiples of {plan.RowGrain} rows so that threads never write the same cache line.");
        w.Line($"/// - q_proj, k_proj and v_proj run as one job over their {s.QueryDim + 2 * s.KvDim} rows together; gate_proj, up_proj and SwiGLU as one");
        w.Line($"///   job per row range: one pass over the pool (and one quantization of the input) instead of three.");
        w.Line(plan.MaxQuantizedCols > 0
            ? "/// - The RMSNorm before each is the fused job's input stage; for quantized weights it is fused with quantizing the activations (one pass, no float copy)."
            : "/// - The RMSNorm before each is the fused job's input stage: each token is normalized once, before the rows are split.");
        w.Line("/// - Every kernel is compiled fully optimized at its first call ([MethodImpl(AggressiveOptimization)]): a prefill runs a few");
        w.Line("///   times per conversation, too few calls for tiered compilation to leave tier-0 code before it matters.");
        w.Line("/// </summary>");
        w.Line(Emitter.GeneratedCodeAttribute);
        using (w.Block("private static class Kernels"))
        {
            w.Line($$"""
                /// <summary>Multiply-adds below which a call runs on the calling thread.</summary>
                private const long ParallelWork = {{plan.ParallelWork}};
                /// <summary>Rows per unit of work when a matrix is split across threads: 16 floats = one cache line of y.</summary>
                private const int RowGrain = {{plan.RowGrain}};

                """);
            // Projections called on their own; q/k/v and gate/up go through their fused jobs below.
            MatMulKernel[] standalone =
            {
                plan.MatMulFor(s.HiddenSize, s.QueryDim),
                plan.MatMulFor(s.HiddenSize, s.IntermediateSize),
                plan.MatMulFor(s.VocabSize, s.HiddenSize),
            };
            foreach (MatMulKernel kernel in plan.MatMuls.Where(k => standalone.Contains(k)))
            {
                WriteDispatcher(w, kernel);
                w.Line();
            }
            WriteQkv(w, plan);
            w.Line();
            WriteGateUp(w, plan);
            w.Line();
            WriteAttentionDispatcher(w, s);
            w.Line();
            foreach (MatMulKernel kernel in plan.MatMuls)
            {
                if (kernel.IsBlockQuantized)
                    WriteBlockMatMul(w, kernel, plan.TokenTile);
                else
                    WriteMatMul(w, kernel, plan.TokenTile);
                w.Line();
            }
            // The row products of the quantized kernels depend on the row only: one pair per distinct format and width.
            foreach ((ComputeFormat format, int cols) in plan.MatMuls.Where(k => k.IsBlockQuantized).Select(k => (k.Format, k.Cols)).Distinct())
            {
                WriteBlockRow(w, format, cols, 1);
                w.Line();
                WriteBlockRow(w, format, cols, plan.TokenTile);
                w.Line();
            }
            WriteRmsNorm(w, plan);
            w.Line();
            WriteAttention(w, s);
            w.Line();
            WriteSwiGlu(w);
            w.Line();
            if (plan.MaxQuantizedCols > 0)
                WriteBlockHelpers(w, plan);
            if (s.QkvBias || s.OutputBias || s.MlpBias)
            {
                w.Line("""
                    /// <summary>y[t] += bias for t &lt; tokens; y: [tokens, bias.Length].</summary>
                    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                    public static void AddBias(Span<float> y, ReadOnlySpan<float> bias, int tokens)
                    {
                        for (int t = 0; t < tokens; t++)
                        {
                            Span<float> row = y.Slice(t * bias.Length, bias.Length);
                            KernelMath.Add(row, bias);
                        }
                    }

                    """);
            }
            w.Line("""
                [MethodImpl(MethodImplOptions.AggressiveInlining)]
                private static void Store(ref float y, float value, bool accumulate) => y = accumulate ? y + value : value;

                /// <summary>[Σa, Σb, Σc, Σd]: the lanes of four vectors summed, with one add tree instead of four.</summary>
                [MethodImpl(MethodImplOptions.AggressiveInlining)]
                private static Vector128<float> Sum4(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
                {
                    if (Avx.IsSupported)
                    {
                        // hadd(a, b) = [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, ...]; twice more gives each vector's four partial sums per half.
                        Vector256<float> sums = Avx.HorizontalAdd(Avx.HorizontalAdd(a, b), Avx.HorizontalAdd(c, d));
                        return sums.GetLower() + sums.GetUpper();
                    }
                    return Vector128.Create(Vector256.Sum(a), Vector256.Sum(b), Vector256.Sum(c), Vector256.Sum(d));
                }

                /// <summary>Runs <paramref name="job"/> over [0, items) on the pool when the call is worth splitting, else on this thread.</summary>
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                private static void Run<TJob>(WorkerPool pool, ref TJob job, long work, int items, int grain) where TJob : struct, IParallelJob
                {
                    if (work >= ParallelWork && pool.Threads > 1)
                        pool.For(ref job, items, grain);
                    else
                        job.Execute(0, items, 0);
                }
                """);
        }
    }

    private static void WriteMatMul(SourceWriter w, MatMulKernel k, int tile)
    {
        int rows = k.Rows, cols = k.Cols;
        int vectorEnd = cols - cols % Width;
        string[] tokens = Enumerable.Range(0, tile).Select(i => ((char)('a' + i)).ToString()).ToArray();

        w.Line($$"""
            /// <summary>
            /// Rows [rowStart, rowEnd) of y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>.
            /// W: {{k.Format}} [{{rows}}, {{cols}}] row-major; x: [tokens, {{cols}}]; y: [tokens, {{rows}}].
            /// </summary>
            """);
        bool half = k.Format == ComputeFormat.F16;
        string signature = half
            ? $"private static void {k.Name}Rows(ReadOnlySpan<byte> w, ReadOnlySpan<float> x, Span<float> y, int tokens, bool accumulate, int rowStart, int rowEnd)"
            : $"private static void {k.Name}Rows(ReadOnlySpan<float> w, {(k.DecodeWide ? "bool lineAligned, " : "")}ReadOnlySpan<float> x, Span<float> y, int tokens, bool accumulate, int rowStart, int rowEnd)";
        w.Line("[MethodImpl(MethodImplOptions.AggressiveOptimization)]");
        using (w.Block(signature))
        {
            w.Line($$"""
                const int Rows = {{rows}}, Cols = {{cols}}, RowBlock = {{k.RowBlock}};
                // The kernel's only bounds check; below, every access is a ref offset within these lengths.
                if (tokens < 0 || rowStart < 0 || rowEnd > Rows || w.Length < Rows * Cols{{(half ? " * 2" : "")}} || x.Length < (long)tokens * Cols || y.Length < (long)tokens * Rows)
                    throw new ArgumentException("{{k.Name}}: a buffer is smaller than its shape.");{{(half ? "\nSpan<float> halfRow = stackalloc float[Cols]; // one weight row widened to F32" : "\nref float w0 = ref MemoryMarshal.GetReference(w);")}}
                ref float x0 = ref MemoryMarshal.GetReference(x);
                ref float y0 = ref MemoryMarshal.GetReference(y);

                // Prefill: rows in blocks of RowBlock (about {{k.RowBlock * k.Cols * (half ? 2 : 4) / 1024}} KB of weights, which stay in cache) and, per block,
                // {{tile}} tokens per pass: each row comes from memory once per chunk of tokens, from cache for the other tiles.
                """);
            using (w.Block("for (int rowBlock = rowStart; rowBlock < rowEnd; rowBlock += RowBlock)"))
            using (w.Block($"for (int t = 0; t + {tile} <= tokens; t += {tile})"))
            {
                w.Line("ref float xa = ref Unsafe.Add(ref x0, t * Cols);");
                for (int i = 1; i < tile; i++)
                    w.Line($"ref float x{tokens[i]} = ref Unsafe.Add(ref xa, {i} * Cols);");
                w.Line("ref float yt = ref Unsafe.Add(ref y0, t * Rows);");
                if (k.PrefillRows == 2 && tile == 4)
                    WriteTwoRowTile(w);
                else
                    WriteOneRowTile(w, half, cols, vectorEnd, tokens);
            }
            w.Line();
            if (k.DecodeRows == 4)
            {
                w.Line("// The remaining tokens (all of decode) one at a time, four rows per pass: each x vector is loaded once for");
                w.Line("// four rows, two independent sums per row hide FMA latency, and one horizontal add tree yields four outputs.");
            }
            else
            {
                w.Line(k.Accumulators > 1
                    ? $"// The remaining tokens (all of decode) one at a time, {k.Accumulators} independent sums per row to hide FMA latency."
                    : "// The remaining tokens (all of decode) one at a time.");
            }
            using (w.Block($"for (int t = tokens - tokens % {tile}; t < tokens; t++)"))
            {
                w.Line("ref float xt = ref Unsafe.Add(ref x0, t * Cols);");
                w.Line("ref float yt = ref Unsafe.Add(ref y0, t * Rows);");
                if (k.DecodeRows == 4)
                {
                    WriteFourRowDot(w, cols);
                }
                else
                {
                    if (k.DecodeWide)
                        WriteWideDecode(w);
                    using (w.Block("for (int r = rowStart; r < rowEnd; r++)"))
                    {
                        WriteRow(w, half);
                        WriteDot(w, k.Accumulators, cols, vectorEnd);
                        w.Line("Store(ref Unsafe.Add(ref yt, r), sum, accumulate);");
                    }
                }
            }
        }
    }

    /// <summary>The prefill tile for any row: one row × the tile's tokens, one sum per token.</summary>
    private static void WriteOneRowTile(SourceWriter w, bool half, int cols, int vectorEnd, string[] tokens)
    {
        using (w.Block("for (int r = rowBlock; r < Math.Min(rowBlock + RowBlock, rowEnd); r++)"))
        {
            WriteRow(w, half);
            if (vectorEnd > 0)
            {
                w.Line($"Vector256<float> {string.Join(", ", tokens.Select(n => $"s{n} = Vector256<float>.Zero"))};");
                using (w.Block($"for (nuint i = 0; i < {vectorEnd}; i += 8)"))
                {
                    w.Line("Vector256<float> wv = Vector256.LoadUnsafe(ref row, i);");
                    foreach (string n in tokens)
                        w.Line($"s{n} = Vector256.FusedMultiplyAdd(wv, Vector256.LoadUnsafe(ref x{n}, i), s{n});");
                }
                w.Line($"float {string.Join(", ", tokens.Select(n => $"{n} = Vector256.Sum(s{n})"))};");
            }
            else
            {
                w.Line($"float {string.Join(", ", tokens.Select(n => $"{n} = 0f"))};");
            }
            if (vectorEnd < cols)
            {
                using (w.Block($"for (int i = {vectorEnd}; i < Cols; i++)"))
                {
                    w.Line("float wi = Unsafe.Add(ref row, i);");
                    foreach (string n in tokens)
                        w.Line($"{n} += wi * Unsafe.Add(ref x{n}, i);");
                }
            }
            for (int i = 0; i < tokens.Length; i++)
                w.Line($"Store(ref Unsafe.Add(ref yt, {(i == 0 ? "" : $"{i} * Rows + ")}r), {tokens[i]}, accumulate);");
        }
    }

    /// <summary>
    /// The prefill tile for F32 rows of whole vectors: two rows × four tokens, eight independent sums,
    /// enough to keep both FMA ports busy through the 4-cycle FMA latency.
    /// </summary>
    private static void WriteTwoRowTile(SourceWriter w)
    {
        string[] tokens = { "a", "b", "c", "d" };
        using (w.Block("for (int r = rowBlock; r < Math.Min(rowBlock + RowBlock, rowEnd); r += 2)"))
        {
            w.Line("ref float row0 = ref Unsafe.Add(ref w0, r * Cols);");
            w.Line("ref float row1 = ref Unsafe.Add(ref row0, Cols);");
            w.Line($"Vector256<float> {string.Join(", ", tokens.SelectMany(n => new[] { $"{n}0 = Vector256<float>.Zero", $"{n}1 = Vector256<float>.Zero" }))};");
            using (w.Block("for (nuint i = 0; i < Cols; i += 8)"))
            {
                w.Line("Vector256<float> w0v = Vector256.LoadUnsafe(ref row0, i), w1v = Vector256.LoadUnsafe(ref row1, i);");
                foreach (string n in tokens)
                {
                    w.Line($"Vector256<float> x{n}v = Vector256.LoadUnsafe(ref x{n}, i);");
                    w.Line($"{n}0 = Vector256.FusedMultiplyAdd(w0v, x{n}v, {n}0);");
                    w.Line($"{n}1 = Vector256.FusedMultiplyAdd(w1v, x{n}v, {n}1);");
                }
            }
            w.Line("// [row r, row r + 1] × [tokens a, b, c, d]");
            w.Line("Vector128<float> sums0 = Sum4(a0, b0, c0, d0), sums1 = Sum4(a1, b1, c1, d1);");
            for (int i = 0; i < 4; i++)
            {
                string offset = i == 0 ? "r" : $"{i} * Rows + r";
                w.Line($"Store(ref Unsafe.Add(ref yt, {offset}), sums0.GetElement({i}), accumulate);");
                w.Line($"Store(ref Unsafe.Add(ref yt, {offset} + 1), sums1.GetElement({i}), accumulate);");
            }
        }
    }

    /// <summary>y[r..r+4) = four rows · xt, for F32 rows of a multiple of 8 columns (rowStart and rowEnd are multiples of 4).</summary>
    private static void WriteFourRowDot(SourceWriter w, int cols)
    {
        string[] rows = { "a", "b", "c", "d" };
        int pairEnd = cols - cols % 16;
        using (w.Block("for (int r = rowStart; r < rowEnd; r += 4)"))
        {
            w.Line("ref float ra = ref Unsafe.Add(ref w0, r * Cols);");
            for (int i = 1; i < 4; i++)
                w.Line($"ref float r{rows[i]} = ref Unsafe.Add(ref ra, {i} * Cols);");
            w.Line($"Vector256<float> {string.Join(", ", rows.SelectMany(n => new[] { $"{n}0 = Vector256<float>.Zero", $"{n}1 = Vector256<float>.Zero" }))};");
            if (pairEnd > 0)
            {
                using (w.Block($"for (nuint i = 0; i < {pairEnd}; i += 16)"))
                {
                    w.Line("Vector256<float> xLow = Vector256.LoadUnsafe(ref xt, i), xHigh = Vector256.LoadUnsafe(ref xt, i + 8);");
                    foreach (string n in rows)
                    {
                        w.Line($"{n}0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref r{n}, i), xLow, {n}0);");
                        w.Line($"{n}1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref r{n}, i + 8), xHigh, {n}1);");
                    }
                }
            }
            if (pairEnd < cols)
            {
                w.Line($"Vector256<float> xLast = Vector256.LoadUnsafe(ref xt, {pairEnd});");
                foreach (string n in rows)
                    w.Line($"{n}0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref r{n}, {pairEnd}), xLast, {n}0);");
            }
            w.Line("ref float yr = ref Unsafe.Add(ref yt, r);");
            w.Line("Vector128<float> sums = Sum4(a0 + a1, b0 + b1, c0 + c1, d0 + d1);");
            w.Line("(accumulate ? sums + Vector128.LoadUnsafe(ref yr) : sums).StoreUnsafe(ref yr);");
        }
    }

    /// <summary>
    /// The multiply-adds a call reports to <c>Run</c>. A kernel whose output rows are not a whole number of
    /// cache lines reports nothing for a batch of tokens: split by rows, two threads would write the same
    /// line at every token's row boundary (false sharing measured on stories260K's 172-wide feed-forward:
    /// 2-thread prefill slower than 1-thread), so it splits only for one token.
    /// </summary>
    private static string Work(MatMulKernel k, string factor) => k.PrefillSplit
        ? $"{factor} * tokens * {k.Rows} * {k.Cols}"
        : $"tokens == 1 ? {factor} * {k.Rows} * {k.Cols} : 0";

    /// <summary>The weight arguments of a rows kernel: the floats, the packed bytes, or the blocks and their float scales.</summary>
    private static string WeightArgs(MatMulKernel k, string tensor) => k.Format switch
    {
        ComputeFormat.F32 => k.DecodeWide ? $"{tensor}.Span, {tensor}.IsCacheLineAligned" : $"{tensor}.Span",
        ComputeFormat.F16 => $"{tensor}.Bytes",
        _ => $"{tensor}.Bytes",
    };

    /// <summary>The public entry of a matrix kernel: quantizes the input if needed, then runs the rows, threaded or not.</summary>
    private static void WriteDispatcher(SourceWriter w, MatMulKernel k)
    {
        string tensor = k.Format == ComputeFormat.F32 ? "WeightTensor" : "PackedTensor";
        w.Line($$"""
            /// <summary>
            /// y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>.
            /// W: {{k.Format}} [{{k.Rows}}, {{k.Cols}}]; x: [tokens, {{k.Cols}}]; y: [tokens, {{k.Rows}}]. Used by {{k.Uses}}.
            /// </summary>
            """);
        if (k.IsBlockQuantized)
        {
            w.Line($$"""
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public static void {{k.Name}}(WorkerPool pool, {{tensor}} w, float[] x, float[] y, int tokens, bool accumulate, sbyte[] xQuantized, float[] xScales, int[] xSums)
                {
                    QuantizeBlocks(x.AsSpan(0, tokens * {{k.Cols}}), xQuantized, xScales, xSums);
                    var job = new {{k.Name}}Job(w, xQuantized, xScales, xSums, y, tokens, accumulate);
                    Run(pool, ref job, {{Work(k, "1L")}}, {{k.Rows}}, RowGrain);
                }

                private struct {{k.Name}}Job(PackedTensor w, sbyte[] xQuantized, float[] xScales, int[] xSums, float[] y, int tokens, bool accumulate) : IParallelJob
                {
                    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                    public void Execute(int start, int end, int worker) => {{k.Name}}Rows(w.Bytes, xQuantized, xScales, xSums, y, tokens, accumulate, start, end);
                }
                """);
        }
        else
        {
            w.Line($$"""
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public static void {{k.Name}}(WorkerPool pool, {{tensor}} w, float[] x, float[] y, int tokens, bool accumulate)
                {
                    var job = new {{k.Name}}Job(w, x, y, tokens, accumulate);
                    Run(pool, ref job, {{Work(k, "1L")}}, {{k.Rows}}, RowGrain);
                }

                private struct {{k.Name}}Job({{tensor}} w, float[] x, float[] y, int tokens, bool accumulate) : IParallelJob
                {
                    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                    public void Execute(int start, int end, int worker) => {{k.Name}}Rows({{WeightArgs(k, "w")}}, x, y, tokens, accumulate, start, end);
                }
                """);
        }
    }

    /// <summary>
    /// q_proj, k_proj and v_proj as one job over their stacked rows: the input is read (and for Q8_0/Q4_0
    /// quantized) once and the pool is woken once.
    /// </summary>
    private static void WriteQkv(SourceWriter w, ForwardPlan plan)
    {
        ModelSpec s = plan.Spec;
        MatMulKernel q = plan.MatMulFor(s.QueryDim, s.HiddenSize), kv = plan.MatMulFor(s.KvDim, s.HiddenSize);
        string tensor = q.Format == ComputeFormat.F32 ? "WeightTensor" : "PackedTensor";
        string input = NormInputParams(q);
        string inputArgs = q.IsBlockQuantized ? "xQuantized, xScales, xSums" : "xNormed";
        w.Line($$"""
            /// <summary>
            /// q[t] = Wq·n[t], k[t] = Wk·n[t], v[t] = Wv·n[t] with n[t] = RMSNorm(x[t]) ⊙ norm, for t &lt; <paramref name="tokens"/>, split over the
            /// QueryDim + 2·KvDim = {{s.QueryDim + 2 * s.KvDim}} stacked rows. Wq: {{q.Format}} [{{s.QueryDim}}, {{s.HiddenSize}}]; Wk, Wv: {{kv.Format}} [{{s.KvDim}}, {{s.HiddenSize}}];
            /// norm: [{{s.HiddenSize}}]; x: [tokens, {{s.HiddenSize}}]; q: [tokens, {{s.QueryDim}}]; k, v: [tokens, {{s.KvDim}}].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void Qkv(WorkerPool pool, WeightTensor norm, {{tensor}} wq, {{tensor}} wk, {{tensor}} wv, float[] x, {{NormInputParams(q)}}, float[] q, float[] k, float[] v, int tokens)
            {
            """);
        WriteNormInput(w, q);
        w.Line($$"""
                var job = new QkvJob(wq, wk, wv, {{inputArgs}}, q, k, v, tokens);
                Run(pool, ref job, (long)tokens * (QueryDim + 2 * KvDim) * HiddenSize, QueryDim + 2 * KvDim, RowGrain);
            }

            private struct QkvJob({{tensor}} wq, {{tensor}} wk, {{tensor}} wv, {{input}}, float[] q, float[] k, float[] v, int tokens) : IParallelJob
            {
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public void Execute(int start, int end, int worker)
                {
                    // Stacked rows: [0, QueryDim) of q, then KvDim rows of k, then KvDim rows of v.
                    if (start < QueryDim)
                        {{q.Name}}Rows({{WeightArgs(q, "wq")}}, {{inputArgs}}, q, tokens, accumulate: false, start, Math.Min(end, QueryDim));
                    if (end > QueryDim && start < QueryDim + KvDim)
                        {{kv.Name}}Rows({{WeightArgs(kv, "wk")}}, {{inputArgs}}, k, tokens, accumulate: false, Math.Max(start, QueryDim) - QueryDim, Math.Min(end, QueryDim + KvDim) - QueryDim);
                    if (end > QueryDim + KvDim)
                        {{kv.Name}}Rows({{WeightArgs(kv, "wv")}}, {{inputArgs}}, v, tokens, accumulate: false, Math.Max(start, QueryDim + KvDim) - QueryDim - KvDim, end - QueryDim - KvDim);
                }
            }
            """);
    }

    /// <summary>The buffers a normalized input goes to: floats for F32 kernels, int8 blocks and their scales for quantized ones.</summary>
    private static string NormInputParams(MatMulKernel k) => k.IsBlockQuantized ? "sbyte[] xQuantized, float[] xScales, int[] xSums" : "float[] xNormed";

    /// <summary>
    /// The input stage of a projection that follows an RMSNorm: every token is normalized once, before the rows are
    /// split across threads; for quantized kernels the norm is fused with the activation quantization.
    /// </summary>
    private static void WriteNormInput(SourceWriter w, MatMulKernel k)
    {
        if (k.IsBlockQuantized)
        {
            w.Line("""
                    // Input stage: RMSNorm fused with quantizing the activations; the normalized floats are never stored.
                    for (int t = 0; t < tokens; t++)
                        RmsNormQuantize(x.AsSpan(t * HiddenSize, HiddenSize), norm.Span, xQuantized.AsSpan(t * HiddenSize, HiddenSize),
                            xScales.AsSpan(t * (HiddenSize / 32), HiddenSize / 32), xSums.AsSpan(t * (HiddenSize / 32), HiddenSize / 32));
                """);
        }
        else
        {
            w.Line("""
                    // Input stage: each token normalized once into xNormed, before the rows are split; every row's dot product reads it.
                    for (int t = 0; t < tokens; t++)
                        RmsNorm(x.AsSpan(t * HiddenSize, HiddenSize), norm.Span, xNormed.AsSpan(t * HiddenSize, HiddenSize));
                """);
        }
    }

    /// <summary>
    /// gate_proj, up_proj, their biases and SwiGLU fused into one job: each thread computes its rows of
    /// both products and applies SiLU(gate) ⊙ up to them while they are still in cache.
    /// </summary>
    private static void WriteGateUp(SourceWriter w, ForwardPlan plan)
    {
        ModelSpec s = plan.Spec;
        MatMulKernel k = plan.MatMulFor(s.IntermediateSize, s.HiddenSize);
        string tensor = k.Format == ComputeFormat.F32 ? "WeightTensor" : "PackedTensor";
        string input = NormInputParams(k);
        string inputArgs = k.IsBlockQuantized ? "xQuantized, xScales, xSums" : "xNormed";
        string biasParams = s.MlpBias ? ", WeightTensor gateBias, WeightTensor upBias" : "";
        string biasArgs = s.MlpBias ? ", gateBias, upBias" : "";
        w.Line($$"""
            /// <summary>
            /// h[t] = SiLU(Wgate·n[t]) ⊙ (Wup·n[t]) with n[t] = RMSNorm(x[t]) ⊙ norm, for t &lt; <paramref name="tokens"/>, gate_proj, up_proj
            /// and SwiGLU in one pass per row range. Wgate, Wup: {{k.Format}} [IntermediateSize={{k.Rows}}, HiddenSize={{k.Cols}}]; norm: [{{k.Cols}}];
            /// x: [tokens, {{k.Cols}}]; h, up: [tokens, {{k.Rows}}] (up is scratch).
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void GateUp(WorkerPool pool, WeightTensor norm, {{tensor}} gate, {{tensor}} up, float[] x, {{NormInputParams(k)}}, float[] h, float[] upOut, int tokens{{biasParams}})
            {
            """);
        WriteNormInput(w, k);
        w.Line($$"""
                var job = new GateUpJob(gate, up, {{inputArgs}}, h, upOut, tokens{{biasArgs}});
                Run(pool, ref job, {{Work(k, "2L")}}, {{k.Rows}}, RowGrain);
            }

            private struct GateUpJob({{tensor}} gate, {{tensor}} up, {{input}}, float[] h, float[] upOut, int tokens{{biasParams}}) : IParallelJob
            {
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public void Execute(int start, int end, int worker)
                {
                    {{k.Name}}Rows({{WeightArgs(k, "gate")}}, {{inputArgs}}, h, tokens, accumulate: false, start, end);
                    {{k.Name}}Rows({{WeightArgs(k, "up")}}, {{inputArgs}}, upOut, tokens, accumulate: false, start, end);
                    for (int t = 0; t < tokens; t++)
                    {
                        Span<float> gateRows = h.AsSpan(t * IntermediateSize + start, end - start);
                        Span<float> upRows = upOut.AsSpan(t * IntermediateSize + start, end - start);
            """);
        if (s.MlpBias)
        {
            w.Line("""
                            KernelMath.Add(gateRows, gateBias.Span.Slice(start, end - start));
                            KernelMath.Add(upRows, upBias.Span.Slice(start, end - start));
                """);
        }
        w.Line("""
                        SwiGlu(gateRows, upRows);
                    }
                }
            }
            """);
    }

    /// <summary>Attention for a batch of tokens, split by token × KV head across the pool for long contexts.</summary>
    private static void WriteAttentionDispatcher(SourceWriter w, ModelSpec s)
    {
        w.Line("""
            /// <summary>
            /// Causal attention of <paramref name="tokens"/> tokens at positions pos, pos+1, ...: token t attends to cache
            /// positions [0, pos + t]. q, output: [tokens, QueryDim]; keys, values: one layer's cache
            /// [KvHeadCount, MaxContext, HeadDim]; scores: [pool.Threads, GroupSize, MaxContext] scratch, one block per thread.
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void Attention(WorkerPool pool, float[] q, float[] keys, float[] values, int pos, int tokens, float[] scores, float[] output)
            {
                var job = new AttentionJob(q, keys, values, pos, scores, output);
                Run(pool, ref job, 2L * tokens * (pos + tokens) * QueryDim, tokens * KvHeadCount, grain: 1);
            }

            private struct AttentionJob(float[] q, float[] keys, float[] values, int pos, float[] scores, float[] output) : IParallelJob
            {
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public void Execute(int start, int end, int worker)
                {
                    for (int item = start; item < end; item++)
                    {
                        int t = item / KvHeadCount, kvHead = item % KvHeadCount;
                        AttentionHeads(q.AsSpan(t * QueryDim, QueryDim), keys, values, pos + t + 1, scores.AsSpan(worker * GroupSize * MaxContext, GroupSize * MaxContext),
                            output.AsSpan(t * QueryDim, QueryDim), kvHead, kvHead + 1);
                    }
                }
            }
            """);
    }

    /// <summary>Points <c>row</c> at weight row r: in place for F32, widened into halfRow for F16.</summary>
    private static void WriteRow(SourceWriter w, bool half)
    {
        if (half)
        {
            w.Line("KernelMath.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(w.Slice(r * Cols * 2, Cols * 2)), halfRow);");
            w.Line("ref float row = ref MemoryMarshal.GetReference(halfRow);");
        }
        else
        {
            w.Line("ref float row = ref Unsafe.Add(ref w0, r * Cols);");
        }
    }

    /// <summary>Bytes of one block's weights: 32 int8 (Q8_0) or 16 bytes of 4-bit values (Q4_0).</summary>
    private static int QuantBytes(ComputeFormat format) => format == ComputeFormat.Q8_0 ? 32 : 16;

    /// <summary>Bytes of one block: its F16 scale and its weights.</summary>
    private static int BlockBytes(ComputeFormat format) => 2 + QuantBytes(format);

    /// <summary>The one-token loop of a Q8_0/Q4_0 kernel, for the header.</summary>
    private static string BlockDecodeSummary(MatMulKernel k)
    {
        int blocks = Blocks(k), groups = blocks / GroupBlocks, tail = blocks % GroupBlocks;
        string steps = blocks >= StepBlocks ? $"{StepBlocks} blocks per step (their scales converted and integer sums reduced together)" : "one block per step";
        return $"{steps}, {groups} group(s) of {GroupBlocks} blocks{(tail > 0 ? $" and one of {tail}" : "")} per row"
            + (k.DecodePrefetch > 0 ? $", each row prefetched {k.DecodePrefetch / 1024} KB ahead (the model streams from memory)" : "");
    }

    /// <summary>
    /// A Q8_0/Q4_0 matrix kernel: x is quantized to int8 blocks first (with each block's scale and sum), then each
    /// output is one call of the row product for its width (<see cref="WriteBlockRow"/>): a tile of tokens per row in
    /// prefill, one token in decode.
    /// </summary>
    private static void WriteBlockMatMul(SourceWriter w, MatMulKernel k, int tile)
    {
        int blocks = Blocks(k);
        w.Line($$"""
            /// <summary>
            /// Rows [rowStart, rowEnd) of y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>.
            /// W: {{k.Format}} [{{k.Rows}}, {{k.Cols}}] in the runtime's kernel layout ({{blocks}} blocks of {{BlockBytes(k.Format)}} bytes per row, see {{RowName(k.Format, k.Cols, 1)}});
            /// x, already quantized: [tokens, {{k.Cols}}] int8 with [tokens, {{blocks}}] block scales and block sums; y: [tokens, {{k.Rows}}].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            private static void {{k.Name}}Rows(ReadOnlySpan<byte> w, ReadOnlySpan<sbyte> xQuantized, ReadOnlySpan<float> xScales, ReadOnlySpan<int> xSums, Span<float> y, int tokens, bool accumulate, int rowStart, int rowEnd)
            {
                const int Rows = {{k.Rows}}, Cols = {{k.Cols}}, Blocks = {{blocks}}, RowBytes = Blocks * {{BlockBytes(k.Format)}}, RowBlock = {{k.RowBlock}};
                // The kernel's only bounds check; below, every access is a ref offset within these lengths.
                if (tokens < 0 || rowStart < 0 || rowEnd > Rows || w.Length < Rows * RowBytes || y.Length < (long)tokens * Rows
                    || xQuantized.Length < (long)tokens * Cols || xScales.Length < (long)tokens * Blocks || xSums.Length < (long)tokens * Blocks)
                    throw new ArgumentException("{{k.Name}}: a buffer is smaller than its shape.");
                ref byte w0 = ref MemoryMarshal.GetReference(w);
                ref sbyte q0 = ref MemoryMarshal.GetReference(xQuantized);
                ref float d0 = ref MemoryMarshal.GetReference(xScales);
                ref int s0 = ref MemoryMarshal.GetReference(xSums);
                ref float y0 = ref MemoryMarshal.GetReference(y);

                // Prefill: rows in blocks of RowBlock (about {{k.RowBlock * blocks * BlockBytes(k.Format) / 1024}} KB of weights, which stay in cache) and
                // {{tile}} tokens per pass over them (each row read once for all {{tile}}).
                for (int rowBlock = rowStart; rowBlock < rowEnd; rowBlock += RowBlock)
                {
                    for (int t = 0; t + {{tile}} <= tokens; t += {{tile}})
                    {
                        ref sbyte qt = ref Unsafe.Add(ref q0, t * Cols);
                        ref float dt = ref Unsafe.Add(ref d0, t * Blocks);
                        ref int st = ref Unsafe.Add(ref s0, t * Blocks);
                        for (int r = rowBlock; r < Math.Min(rowBlock + RowBlock, rowEnd); r++)
                        {
                            Vector128<float> sums = {{RowName(k.Format, k.Cols, tile)}}(ref Unsafe.Add(ref w0, r * RowBytes), ref qt, ref dt, ref st);
                            for (int i = 0; i < {{tile}}; i++)
                                Store(ref Unsafe.Add(ref y0, (t + i) * Rows + r), sums[i], accumulate);
                        }
                    }
                }

                // The remaining tokens (all of decode) one at a time.
                for (int t = tokens - tokens % {{tile}}; t < tokens; t++)
                {
                    ref sbyte qt = ref Unsafe.Add(ref q0, t * Cols);
                    ref float dt = ref Unsafe.Add(ref d0, t * Blocks);
                    ref int st = ref Unsafe.Add(ref s0, t * Blocks);
            {{DecodeRowLoop(k)}}
                }
            }
            """);
    }

    /// <summary>The one-token loop over a quantized kernel's rows, with the planner's prefetch when the model streams from memory.</summary>
    private static string DecodeRowLoop(MatMulKernel k)
    {
        string product = $"Store(ref Unsafe.Add(ref y0, t * Rows + r), {RowName(k.Format, k.Cols, 1)}(ref row, ref qt, ref dt, ref st), accumulate);";
        if (k.DecodePrefetch == 0)
            return $$"""
                        for (int r = rowStart; r < rowEnd; r++)
                            {{product.Replace("ref row", "ref Unsafe.Add(ref w0, r * RowBytes)")}}
                """;
        return $$"""
                        for (int r = rowStart; r < rowEnd; r++)
                        {
                            ref byte row = ref Unsafe.Add(ref w0, r * RowBytes);
                            // The weights stream from memory: the row {{k.DecodePrefetch / 1024}} KB ahead is requested now, so it is in cache by its turn.
                            Prefetch.Lines(ref Unsafe.Add(ref row, {{k.DecodePrefetch}}), RowBytes);
                            {{product}}
                        }
                """;
    }

    /// <summary>The row product of a Q8_0/Q4_0 row of <paramref name="cols"/> weights with <paramref name="tokens"/> quantized token(s).</summary>
    private static string RowName(ComputeFormat format, int cols, int tokens) => $"{format}Row{cols}{(tokens == 1 ? "" : $"x{tokens}")}";

    /// <summary>
    /// One row of a Q8_0/Q4_0 matrix times one quantized token, shaped by the kernel layout: per group of 16 blocks,
    /// two steps of 8 (one load converts 8 F16 scales, one reduction gives 8 integer block sums, one multiply-add
    /// scales them), then the blocks of a last, smaller group.
    /// </summary>
    private static void WriteBlockRow(SourceWriter w, ComputeFormat format, int cols, int tokens)
    {
        int blocks = cols / ForwardPlanner.QuantBlock, groups = blocks / GroupBlocks, tail = blocks % GroupBlocks, first = groups * GroupBlocks;
        int quant = QuantBytes(format), blockBytes = BlockBytes(format);
        string weights = format == ComputeFormat.Q8_0 ? "32 weights + 128 (unsigned bytes)" : "16 bytes of 4-bit weights + 8";
        string layout = $"{(groups > 0 ? $"{groups} group(s) of {GroupBlocks} blocks, each [{GroupBlocks} F16 scales][{GroupBlocks} × {weights}] ({GroupBlocks * blockBytes} bytes)" : "")}"
            + $"{(groups > 0 && tail > 0 ? ", then " : "")}{(tail > 0 ? $"one group of {tail} block(s) [{tail} F16 scales][{tail} × {weights}]" : "")}";
        bool one = tokens == 1;
        string[] sums = one ? ["sum0", "sum1"] : Enumerable.Range(0, tokens).Select(i => $"s{(char)('a' + i)}").ToArray();
        w.Line(one
            ? $$"""
                /// <summary>
                /// Σ_b wScale[b]·xScales[b]·Σ_i w[b, i]·x[b, i]: one row of W · one quantized token. row: {{layout}};
                /// x: [{{cols}}] int8; xScales, xSums: [{{blocks}}] (each block's scale and the sum of its int8 values).
                /// </summary>
                """
            : $$"""
                /// <summary>
                /// {{RowName(format, cols, 1)}} for {{tokens}} consecutive tokens at once (x: [{{tokens}}, {{cols}}], xScales, xSums: [{{tokens}}, {{blocks}}]): each step's
                /// weights come from memory and its scales are converted once for all of them.
                /// </summary>
                """);
        w.Line("[MethodImpl(MethodImplOptions.AggressiveInlining)]");
        using var body = w.Block($"private static {(one ? "float" : "Vector128<float>")} {RowName(format, cols, tokens)}(ref byte row, ref sbyte x, ref float xScales, ref int xSums)");
        w.Line($"Vector256<float> {string.Join(", ", sums.Select(s => $"{s} = Vector256<float>.Zero"))};");

        // One step of 8 blocks: scales (a Vector256 expression), the weights' ref, the first block's index (an expression), the step's number.
        void Step(string scales, string weightsRef, string block, int step)
        {
            if (one)
            {
                string sum = sums[step % 2];
                w.Line($"{sum} = Vector256.FusedMultiplyAdd({scales} * Vector256.LoadUnsafe(ref xScales, {Index(block)}),");
                w.Line($"    Vector256.ConvertToSingle({format}Sums8({weightsRef}, ref Unsafe.Add(ref x, {Times(block, 32)}), ref Unsafe.Add(ref xSums, {block}))), {sum});");
                return;
            }
            w.Line($"scales = {scales};");
            for (int i = 0; i < tokens; i++)
            {
                string tokenBlock = Plus(i * blocks, block);
                w.Line($"{sums[i]} = Vector256.FusedMultiplyAdd(scales * Vector256.LoadUnsafe(ref xScales, {Index(tokenBlock)}),");
                w.Line($"    Vector256.ConvertToSingle({format}Sums8({weightsRef}, ref Unsafe.Add(ref x, {Plus(i * cols, Times(block, 32))}), ref Unsafe.Add(ref xSums, {tokenBlock}))), {sums[i]});");
            }
        }

        if (!one && blocks >= StepBlocks)
            w.Line("Vector256<float> scales;");
        if (groups > 0)
        {
            using (w.Block($"for (int b = 0; b < {first}; b += {GroupBlocks})"))
            {
                w.Line($"ref byte group = ref Unsafe.Add(ref row, b * {blockBytes});");
                Step("HalfToSingle8(ref group)", $"ref Unsafe.Add(ref group, {2 * GroupBlocks})", "b", 0);
                Step($"HalfToSingle8(ref Unsafe.Add(ref group, {2 * StepBlocks}))", $"ref Unsafe.Add(ref group, {2 * GroupBlocks + StepBlocks * quant})", $"b + {StepBlocks}", 1);
            }
        }
        if (tail > 0)
        {
            w.Line($"// Blocks {first}..{blocks - 1}: the last group, {tail} F16 scales then {tail} blocks of weights.");
            w.Line(first == 0 ? "ref byte tail = ref row;" : $"ref byte tail = ref Unsafe.Add(ref row, {first * blockBytes});");
            if (tail >= StepBlocks)
                Step("HalfToSingle8(ref tail)", $"ref Unsafe.Add(ref tail, {2 * tail})", first.ToString(), 0);
            if (tail % StepBlocks != 0)
            {
                using (w.Block($"for (int j = {(tail >= StepBlocks ? StepBlocks : 0)}; j < {tail}; j++)"))
                {
                    string block = Plus(first, "j");
                    w.Line("float scale = HalfToSingle(ref Unsafe.Add(ref tail, 2 * j));");
                    for (int i = 0; i < (one ? 1 : tokens); i++)
                    {
                        string sum = one ? sums[1] : sums[i], tokenBlock = Plus(i * blocks, block);
                        w.Line($"{sum} = Vector256.FusedMultiplyAdd(Vector256.Create(scale * Unsafe.Add(ref xScales, {tokenBlock})),");
                        w.Line($"    Vector256.ConvertToSingle({format}Block(ref Unsafe.Add(ref tail, {2 * tail} + j * {quant}), ref Unsafe.Add(ref x, {Plus(i * cols, Times(block, 32))}), Unsafe.Add(ref xSums, {tokenBlock}))), {sum});");
                    }
                }
            }
        }
        w.Line(one ? "return Vector256.Sum(sum0 + sum1);" : $"return Sum4({string.Join(", ", sums)});");
    }

    /// <summary><paramref name="constant"/> + <paramref name="expression"/> as short as it can be written.</summary>
    private static string Plus(int constant, string expression) =>
        constant == 0 ? expression : int.TryParse(expression, out int value) ? (constant + value).ToString() : $"{constant} + {expression}";

    /// <summary><paramref name="expression"/> · <paramref name="factor"/>, folded when the expression is a number.</summary>
    private static string Times(string expression, int factor) =>
        int.TryParse(expression, out int value) ? (value * factor).ToString() : expression.Contains(' ') ? $"({expression}) * {factor}" : $"{expression} * {factor}";

    /// <summary>An element offset for LoadUnsafe: a constant as is, an expression as nuint.</summary>
    private static string Index(string expression) =>
        int.TryParse(expression, out _) ? expression : expression.Contains(' ') ? $"(nuint)({expression})" : $"(nuint){expression}";

    /// <summary>Activation quantization, the int8 dot products, scale conversion and the weight loaders the Q8_0/Q4_0 kernels share.</summary>
    private static void WriteBlockHelpers(SourceWriter w, ForwardPlan plan)
    {
        MatMulKernel[] quantized = plan.MatMuls.Where(k => k.IsBlockQuantized).ToArray();
        w.Line("""
            /// <summary>
            /// x → int8 blocks of 32 with one scale each, as llama.cpp quantizes activations for Q8_0 dot
            /// products: scale = max|x|/127 (kept as F16), q = round(x/scale); and each block's Σq, which the kernels
            /// subtract for the offset the weights are stored with. x: [n], q: [n], scales, sums: [n/32].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void QuantizeBlocks(ReadOnlySpan<float> x, Span<sbyte> q, Span<float> scales, Span<int> sums)
            {
                if (x.Length % 32 != 0 || q.Length < x.Length || scales.Length < x.Length / 32 || sums.Length < x.Length / 32)
                    throw new ArgumentException("QuantizeBlocks: a buffer is smaller than its shape.");
                ref float x0 = ref MemoryMarshal.GetReference(x);
                ref sbyte q0 = ref MemoryMarshal.GetReference(q);
                ref float scales0 = ref MemoryMarshal.GetReference(scales);
                ref int sums0 = ref MemoryMarshal.GetReference(sums);
                for (int b = 0; b < x.Length / 32; b++)
                {
                    ref float xb = ref Unsafe.Add(ref x0, b * 32);
                    Unsafe.Add(ref scales0, b) = QuantizeBlock(Vector256.LoadUnsafe(ref xb), Vector256.LoadUnsafe(ref xb, 8), Vector256.LoadUnsafe(ref xb, 16), Vector256.LoadUnsafe(ref xb, 24),
                        ref Unsafe.Add(ref q0, b * 32), out Unsafe.Add(ref sums0, b));
                }
            }

            /// <summary>One block of 32 floats (v0..v3) → 32 int8 at <paramref name="q"/> and their sum; returns the block's scale, max|v|/127 rounded to F16.</summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            private static float QuantizeBlock(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3, ref sbyte q, out int sum)
            {
                Vector256<float> max8 = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
                Vector128<float> max4 = Vector128.Max(max8.GetLower(), max8.GetUpper());
                float max = MathF.Max(MathF.Max(max4[0], max4[1]), MathF.Max(max4[2], max4[3]));
                // ggml's AVX2 quantize_row_q8_0 multiplies by 127/max (not 1/scale): the same int8 values to the last bit.
                Vector256<float> inverse = Vector256.Create(max != 0f ? 127f / max : 0f);
                Vector256<int> i0 = Vector256.ConvertToInt32(Vector256.Round(v0 * inverse)), i1 = Vector256.ConvertToInt32(Vector256.Round(v1 * inverse));
                Vector256<int> i2 = Vector256.ConvertToInt32(Vector256.Round(v2 * inverse)), i3 = Vector256.ConvertToInt32(Vector256.Round(v3 * inverse));
                Vector256.Narrow(Vector256.Narrow(i0, i1), Vector256.Narrow(i2, i3)).StoreUnsafe(ref q);
                sum = Vector256.Sum((i0 + i1) + (i2 + i3));
                return (float)(Half)(max / 127f);
            }

            /// <summary>
            /// The 32 products a[i]·b[i] of two int8 vectors, summed into 8 int32 lanes: the path for CPUs without AVX-VNNI,
            /// which take the weights back to signed values.
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            private static Vector256<int> DotInt32(Vector256<sbyte> a, Vector256<sbyte> b)
            {
                if (Avx2.IsSupported)
                {
                    // maddubs multiplies unsigned by signed bytes: move a's sign onto b. |a| ≤ 128 and |b| ≤ 127, so a pair
                    // of products never saturates its int16 sum.
                    Vector256<short> pairs = Avx2.MultiplyAddAdjacent(Avx2.Abs(a), Avx2.Sign(b, a));
                    return Avx2.MultiplyAddAdjacent(pairs, Vector256<short>.One);
                }
                (Vector256<short> aLow, Vector256<short> aHigh) = Vector256.Widen(a);
                (Vector256<short> bLow, Vector256<short> bHigh) = Vector256.Widen(b);
                (Vector256<int> p0, Vector256<int> p1) = Vector256.Widen(aLow * bLow);
                (Vector256<int> p2, Vector256<int> p3) = Vector256.Widen(aHigh * bHigh);
                return (p0 + p1) + (p2 + p3);
            }
            """);
        if (quantized.Any(k => Blocks(k) % GroupBlocks % StepBlocks != 0))
        {
            w.Line("""

                /// <summary>
                /// The F16 block scale at <paramref name="scale"/> as a float, inline: the exponent and mantissa move into
                /// float position and a multiply by 2^112 rebiases the exponent, which is exact for normal and subnormal
                /// values (infinities and NaNs, which no quantizer writes, become large finite numbers).
                /// </summary>
                [MethodImpl(MethodImplOptions.AggressiveInlining)]
                private static float HalfToSingle(ref byte scale)
                {
                    uint half = Unsafe.ReadUnaligned<ushort>(ref scale);
                    float magnitude = BitConverter.UInt32BitsToSingle((half & 0x7FFF) << 13) * 5.192297E+33f; // 2^112
                    return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude) | (half & 0x8000) << 16);
                }
                """);
        }
        if (quantized.Any(k => Blocks(k) >= StepBlocks))
        {
            w.Line("""

                /// <summary>
                /// The 8 consecutive F16 scales at <paramref name="scales"/> as floats, converted together as HalfToSingle
                /// converts one.
                /// </summary>
                [MethodImpl(MethodImplOptions.AggressiveInlining)]
                private static Vector256<float> HalfToSingle8(ref byte scales)
                {
                    Vector256<int> half = Vector256.WidenLower(Vector128.LoadUnsafe(ref Unsafe.As<byte, ushort>(ref scales)).ToVector256Unsafe()).AsInt32();
                    Vector256<float> magnitude = ((half & Vector256.Create(0x7FFF)) << 13).AsSingle() * Vector256.Create(5.192297E+33f); // 2^112
                    return (magnitude.AsInt32() | (half & Vector256.Create(0x8000)) << 16).AsSingle();
                }

                /// <summary>[Σp0, Σp1, ..., Σp7]: the lanes of eight vectors summed, lane i holding vector i's sum.</summary>
                [MethodImpl(MethodImplOptions.AggressiveInlining)]
                private static Vector256<int> Sum8(Vector256<int> p0, Vector256<int> p1, Vector256<int> p2, Vector256<int> p3, Vector256<int> p4, Vector256<int> p5, Vector256<int> p6, Vector256<int> p7)
                {
                    if (Avx2.IsSupported)
                    {
                        // Two levels of hadd leave [Σlow p0..p3 | Σhigh p0..p3] per 128-bit half; adding the halves finishes each sum.
                        Vector256<int> first = Avx2.HorizontalAdd(Avx2.HorizontalAdd(p0, p1), Avx2.HorizontalAdd(p2, p3));
                        Vector256<int> second = Avx2.HorizontalAdd(Avx2.HorizontalAdd(p4, p5), Avx2.HorizontalAdd(p6, p7));
                        return Avx2.Permute2x128(first, second, 0x20) + Avx2.Permute2x128(first, second, 0x31);
                    }
                    return Vector256.Create(Vector256.Sum(p0), Vector256.Sum(p1), Vector256.Sum(p2), Vector256.Sum(p3), Vector256.Sum(p4), Vector256.Sum(p5), Vector256.Sum(p6), Vector256.Sum(p7));
                }
                """);
        }
        foreach (ComputeFormat format in quantized.Select(k => k.Format).Distinct())
        {
            MatMulKernel[] ofFormat = quantized.Where(k => k.Format == format).ToArray();
            if (format == ComputeFormat.Q8_0)
            {
                w.Line("""

                    /// <summary>The 32 weights of a Q8_0 block in the kernel layout: unsigned bytes, each weight + 128.</summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining)]
                    private static Vector256<byte> Q8_0Weights(ref byte weights) => Vector256.LoadUnsafe(ref weights);

                    /// <summary>The same weights as int8 again (for CPUs without AVX-VNNI).</summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining)]
                    private static Vector256<sbyte> Q8_0Signed(Vector256<byte> weights) => (weights ^ Vector256.Create((byte)0x80)).AsSByte();
                    """);
            }
            else
            {
                w.Line("""

                    /// <summary>
                    /// The 32 weights of a Q4_0 block, each + 8, as bytes in [0, 15]: byte j of the block's 16 holds weight j
                    /// in its low nibble and weight j + 16 in its high nibble.
                    /// </summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining)]
                    private static Vector256<byte> Q4_0Weights(ref byte weights)
                    {
                        Vector128<byte> packed = Vector128.LoadUnsafe(ref weights);
                        return Vector256.Create(packed & Vector128.Create((byte)0x0F), Vector128.ShiftRightLogical(packed, 4));
                    }

                    /// <summary>The same weights as int8 in [-8, 7] (for CPUs without AVX-VNNI).</summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining)]
                    private static Vector256<sbyte> Q4_0Signed(Vector256<byte> weights) => (weights - Vector256.Create((byte)8)).AsSByte();
                    """);
            }
            int quant = QuantBytes(format);
            string offset = format == ComputeFormat.Q8_0 ? "128" : "8";
            int shift = format == ComputeFormat.Q8_0 ? 7 : 3;
            if (ofFormat.Any(k => Blocks(k) >= StepBlocks))
            {
                string Weights(int i) => $"{format}Weights(ref {(i == 0 ? "weights" : $"Unsafe.Add(ref weights, {i * quant})")})";
                string X(int i) => $"Vector256.LoadUnsafe(ref x{(i == 0 ? "" : $", {i * 32}")})";
                w.Line($$"""

                    /// <summary>
                    /// The integer dot products of 8 consecutive {{format}} blocks' weights (kernel layout, {{quant}} bytes each from
                    /// <paramref name="weights"/>) with 256 int8 activations whose block sums are <paramref name="xSums"/>: lane i is Σ w·x of block i.
                    /// </summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining)]
                    private static Vector256<int> {{format}}Sums8(ref byte weights, ref sbyte x, ref int xSums)
                    {
                        if (AvxVnni.IsSupported)
                        {
                            // vpdpbusd multiplies the stored unsigned weights by x as they are; the {{offset}}·Σx they add is taken off per block.
                            return Sum8(
                                {{string.Join(",\n            ", Enumerable.Range(0, StepBlocks).Select(i => $"AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, {Weights(i)}, {X(i)})"))}})
                                - (Vector256.LoadUnsafe(ref xSums) << {{shift}});
                        }
                        return Sum8(
                            {{string.Join(",\n        ", Enumerable.Range(0, StepBlocks).Select(i => $"DotInt32({format}Signed({Weights(i)}), {X(i)})"))}});
                    }
                    """);
            }
            if (ofFormat.Any(k => Blocks(k) % GroupBlocks % StepBlocks != 0))
            {
                w.Line($$"""

                    /// <summary>One {{format}} block's weights (kernel layout) · 32 int8 activations whose sum is <paramref name="xSum"/>, in 8 int lanes that sum to Σ w·x.</summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining)]
                    private static Vector256<int> {{format}}Block(ref byte weights, ref sbyte x, int xSum)
                    {
                        // With AVX-VNNI the {{offset}}·Σx the offset weights add is taken off up front, spread over the 8 lanes.
                        if (AvxVnni.IsSupported)
                            return AvxVnni.MultiplyWideningAndAdd(Vector256.Create({{(shift == 3 ? "-xSum" : $"-(xSum << {shift - 3})")}}), {{format}}Weights(ref weights), Vector256.LoadUnsafe(ref x));
                        return DotInt32({{format}}Signed({{format}}Weights(ref weights)), Vector256.LoadUnsafe(ref x));
                    }
                    """);
            }
        }
        w.Line();
    }

    private static int Blocks(MatMulKernel k) => k.Cols / ForwardPlanner.QuantBlock;

    /// <summary>
    /// The 512-bit one-token loop: four Vector512 sums per row, one whole cache line per load. Taken only when the
    /// rows start cache lines (Cols is a multiple of 16, so all rows do when the first does): a 512-bit load that
    /// straddles two lines costs more than two 256-bit loads.
    /// </summary>
    private static void WriteWideDecode(SourceWriter w)
    {
        w.Line("// With 512-bit vectors and rows that start cache lines, one whole line per load; else the 256-bit loop below.");
        using (w.Block("if (Vector512.IsHardwareAccelerated && lineAligned)"))
        {
            using (w.Block("for (int r = rowStart; r < rowEnd; r++)"))
            {
                w.Line("ref float row = ref Unsafe.Add(ref w0, r * Cols);");
                w.Line("Vector512<float> s0 = Vector512<float>.Zero, s1 = Vector512<float>.Zero, s2 = Vector512<float>.Zero, s3 = Vector512<float>.Zero;");
                using (w.Block("for (nuint i = 0; i < Cols; i += 64)"))
                {
                    for (int a = 0; a < 4; a++)
                    {
                        string offset = a == 0 ? "i" : $"i + {a * 16}";
                        w.Line($"s{a} = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref row, {offset}), Vector512.LoadUnsafe(ref xt, {offset}), s{a});");
                    }
                }
                w.Line("Store(ref Unsafe.Add(ref yt, r), Vector512.Sum((s0 + s1) + (s2 + s3)), accumulate);");
            }
            w.Line("continue;");
        }
    }

    /// <summary>sum = row · xt over Cols, with <paramref name="accumulators"/> independent vector sums.</summary>
    private static void WriteDot(SourceWriter w, int accumulators, int cols, int vectorEnd)
    {
        if (vectorEnd == 0)
        {
            w.Line("float sum = 0f;");
        }
        else
        {
            int step = accumulators * Width;
            int unrolledEnd = vectorEnd - vectorEnd % step;
            w.Line($"Vector256<float> {string.Join(", ", Enumerable.Range(0, accumulators).Select(a => $"s{a} = Vector256<float>.Zero"))};");
            if (unrolledEnd > 0)
            {
                // A native-sized index: constant offsets fold into the loads' addressing, no sign extension per load.
                using (w.Block($"for (nuint i = 0; i < {unrolledEnd}; i += {step})"))
                {
                    for (int a = 0; a < accumulators; a++)
                    {
                        string offset = a == 0 ? "i" : $"i + {a * Width}";
                        w.Line($"s{a} = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref row, {offset}), Vector256.LoadUnsafe(ref xt, {offset}), s{a});");
                    }
                }
            }
            for (int i = unrolledEnd, a = 0; i < vectorEnd; i += Width, a++)
                w.Line($"s{a} = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref row, {i}), Vector256.LoadUnsafe(ref xt, {i}), s{a});");
            w.Line($"float sum = Vector256.Sum({SumTree(accumulators)});");
        }
        if (vectorEnd < cols)
        {
            using (w.Block($"for (int i = {vectorEnd}; i < Cols; i++)"))
                w.Line("sum += Unsafe.Add(ref row, i) * Unsafe.Add(ref xt, i);");
        }
    }

    /// <summary>s0..s(n-1) added pairwise: "(s0 + s1) + (s2 + s3)".</summary>
    private static string SumTree(int n) => n switch
    {
        1 => "s0",
        2 => "s0 + s1",
        3 => "(s0 + s1) + s2",
        _ => "(s0 + s1) + (s2 + s3)",
    };

    private static void WriteRmsNorm(SourceWriter w, ForwardPlan plan)
    {
        ModelSpec s = plan.Spec;
        int vectorEnd = s.HiddenSize - s.HiddenSize % Width;
        w.Line("""
            /// <summary>1 / sqrt(mean(x²) + RmsNormEps) of the HiddenSize floats at <paramref name="x0"/>.</summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            private static float InverseRms(ref float x0)
            {
            """);
        w.Line(vectorEnd > 0 ? "    Vector256<float> squares = Vector256<float>.Zero;" : "    float sumOfSquares = 0f;");
        if (vectorEnd > 0)
        {
            w.Line($$"""
                    for (int i = 0; i < {{vectorEnd}}; i += 8)
                    {
                        Vector256<float> v = Vector256.LoadUnsafe(ref x0, (nuint)i);
                        squares = Vector256.FusedMultiplyAdd(v, v, squares);
                    }
                    float sumOfSquares = Vector256.Sum(squares);
                """);
        }
        if (vectorEnd < s.HiddenSize)
            w.Line($"    for (int i = {vectorEnd}; i < HiddenSize; i++)\n        sumOfSquares += Unsafe.Add(ref x0, i) * Unsafe.Add(ref x0, i);");
        w.Line("""
                return 1f / MathF.Sqrt(sumOfSquares / HiddenSize + RmsNormEps);
            }

            /// <summary>y = x / sqrt(mean(x²) + RmsNormEps) ⊙ weight; x, weight, y: [HiddenSize].</summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y)
            {
                if (x.Length < HiddenSize || weight.Length < HiddenSize || y.Length < HiddenSize)
                    throw new ArgumentException("RmsNorm: a buffer is smaller than HiddenSize.");
                ref float x0 = ref MemoryMarshal.GetReference(x);
                ref float w0 = ref MemoryMarshal.GetReference(weight);
                ref float y0 = ref MemoryMarshal.GetReference(y);
                float scale = InverseRms(ref x0);
            """);
        if (vectorEnd > 0)
        {
            w.Line($$"""
                    for (int i = 0; i < {{vectorEnd}}; i += 8)
                        (Vector256.LoadUnsafe(ref w0, (nuint)i) * (Vector256.LoadUnsafe(ref x0, (nuint)i) * scale)).StoreUnsafe(ref y0, (nuint)i);
                """);
        }
        if (vectorEnd < s.HiddenSize)
            w.Line($"    for (int i = {vectorEnd}; i < HiddenSize; i++)\n        Unsafe.Add(ref y0, i) = Unsafe.Add(ref w0, i) * (Unsafe.Add(ref x0, i) * scale);");
        w.Line("}");
        if (plan.MatMulFor(s.QueryDim, s.HiddenSize).IsBlockQuantized || plan.MatMulFor(s.IntermediateSize, s.HiddenSize).IsBlockQuantized)
        {
            w.Line("""

                /// <summary>
                /// RMSNorm fused into a quantized matrix product's input: q and scales are what QuantizeBlocks makes of
                /// x / sqrt(mean(x²) + RmsNormEps) ⊙ weight, computed a block at a time, so the normalized floats are never stored.
                /// x, weight: [HiddenSize]; q: [HiddenSize] int8; scales, sums: [HiddenSize/32].
                /// </summary>
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public static void RmsNormQuantize(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<sbyte> q, Span<float> scales, Span<int> sums)
                {
                    if (x.Length < HiddenSize || weight.Length < HiddenSize || q.Length < HiddenSize || scales.Length < HiddenSize / 32 || sums.Length < HiddenSize / 32)
                        throw new ArgumentException("RmsNormQuantize: a buffer is smaller than HiddenSize.");
                    ref float x0 = ref MemoryMarshal.GetReference(x);
                    ref float w0 = ref MemoryMarshal.GetReference(weight);
                    ref sbyte q0 = ref MemoryMarshal.GetReference(q);
                    ref float scales0 = ref MemoryMarshal.GetReference(scales);
                    ref int sums0 = ref MemoryMarshal.GetReference(sums);
                    Vector256<float> scale = Vector256.Create(InverseRms(ref x0));
                    for (int b = 0; b < HiddenSize / 32; b++)
                    {
                        ref float xb = ref Unsafe.Add(ref x0, b * 32);
                        ref float wb = ref Unsafe.Add(ref w0, b * 32);
                        Unsafe.Add(ref scales0, b) = QuantizeBlock(
                            Vector256.LoadUnsafe(ref wb) * (Vector256.LoadUnsafe(ref xb) * scale), Vector256.LoadUnsafe(ref wb, 8) * (Vector256.LoadUnsafe(ref xb, 8) * scale),
                            Vector256.LoadUnsafe(ref wb, 16) * (Vector256.LoadUnsafe(ref xb, 16) * scale), Vector256.LoadUnsafe(ref wb, 24) * (Vector256.LoadUnsafe(ref xb, 24) * scale),
                            ref Unsafe.Add(ref q0, b * 32), out Unsafe.Add(ref sums0, b));
                    }
                }
                """);
        }
    }

    private static void WriteAttention(SourceWriter w, ModelSpec s)
    {
        if (s.GroupSize > 1)
        {
            WriteGroupedAttention(w, s);
            return;
        }
        int vectors = s.HeadDim % Width == 0 ? s.HeadDim / Width : 0;
        // Up to 8 output vectors stay in registers across the positions; wider heads accumulate in memory.
        bool outputInRegisters = vectors > 0 && vectors <= 8;
        w.Line($$"""
            /// <summary>
            /// Attention of one token over cache positions [0, positions): for each KV head in [kvHeadStart, kvHeadEnd)
            /// of KvHeadCount={{s.KvHeadCount}}, the GroupSize={{s.GroupSize}} query heads that share it (grouped-query attention).
            /// q, output: [QueryDim={{s.QueryDim}}]; keys, values: one layer's cache [KvHeadCount, MaxContext, HeadDim={{s.HeadDim}}];
            /// scores: [MaxContext] scratch.
            /// </summary>
            {{AttentionPrologue(s, "positions")}}
                    for (int g = 0; g < GroupSize; g++)
                    {
                        int head = kvHead * GroupSize + g;
                        ref float qh = ref Unsafe.Add(ref q0, head * HeadDim);
                        ref float oh = ref Unsafe.Add(ref o0, head * HeadDim);

                        // scores[p] = q·k[p] / sqrt(HeadDim)
                        for (int p = 0; p < positions; p++)
                        {
                            ref float kp = ref Unsafe.Add(ref headKeys, p * HeadDim);
            """);
        if (vectors > 0)
        {
            w.Line("                Vector256<float> dot = Vector256.LoadUnsafe(ref qh) * Vector256.LoadUnsafe(ref kp);");
            for (int i = 1; i < vectors; i++)
                w.Line($"                dot = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qh, {i * Width}), Vector256.LoadUnsafe(ref kp, {i * Width}), dot);");
            w.Line("                Unsafe.Add(ref s0, p) = Vector256.Sum(dot) * Scale;");
        }
        else
        {
            w.Line("""
                                float dot = 0f;
                                for (int i = 0; i < HeadDim; i++)
                                    dot += Unsafe.Add(ref qh, i) * Unsafe.Add(ref kp, i);
                                Unsafe.Add(ref s0, p) = dot * Scale;
                """);
        }
        w.Line("""
                        }
                        KernelMath.Softmax(scores.Slice(0, positions));

                        // output = Σ_p scores[p]·v[p]
            """);
        if (outputInRegisters)
        {
            string[] acc = Enumerable.Range(0, vectors).Select(i => $"acc{i}").ToArray();
            w.Line($"            Vector256<float> {string.Join(", ", acc.Select(a => a + " = Vector256<float>.Zero"))};");
            w.Line("            for (int p = 0; p < positions; p++)");
            w.Line("            {");
            w.Line("                Vector256<float> weight = Vector256.Create(Unsafe.Add(ref s0, p));");
            w.Line("                ref float vp = ref Unsafe.Add(ref headValues, p * HeadDim);");
            for (int i = 0; i < vectors; i++)
                w.Line($"                {acc[i]} = Vector256.FusedMultiplyAdd(weight, Vector256.LoadUnsafe(ref vp{(i == 0 ? "" : $", {i * Width}")}), {acc[i]});");
            w.Line("            }");
            for (int i = 0; i < vectors; i++)
                w.Line($"            {acc[i]}.StoreUnsafe(ref oh{(i == 0 ? "" : $", {i * Width}")});");
        }
        else
        {
            w.Line($$"""
                            output.Slice(head * HeadDim, HeadDim).Clear();
                            for (int p = 0; p < positions; p++)
                            {
                                float weight = Unsafe.Add(ref s0, p);
                                ref float vp = ref Unsafe.Add(ref headValues, p * HeadDim);
                """);
            if (vectors > 0)
            {
                w.Line("""
                                    for (int i = 0; i < HeadDim; i += 8)
                                        Vector256.FusedMultiplyAdd(Vector256.Create(weight), Vector256.LoadUnsafe(ref vp, (nuint)i), Vector256.LoadUnsafe(ref oh, (nuint)i)).StoreUnsafe(ref oh, (nuint)i);
                    """);
            }
            else
            {
                w.Line("""
                                    for (int i = 0; i < HeadDim; i++)
                                        Unsafe.Add(ref oh, i) += weight * Unsafe.Add(ref vp, i);
                    """);
            }
            w.Line("            }");
        }
        w.Line("""
                    }
                }
            }
            """);
    }

    /// <summary>
    /// The start of both attention kernels up to the loop over KV heads: the signature, the one bounds check
    /// (<paramref name="scoresLength"/> is what the variant needs of its scratch), the refs.
    /// </summary>
    private static string AttentionPrologue(ModelSpec s, string scoresLength) => $$"""
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void AttentionHeads(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int positions, Span<float> scores, Span<float> output, int kvHeadStart, int kvHeadEnd)
        {
            if (kvHeadStart < 0 || kvHeadEnd > KvHeadCount || q.Length < QueryDim || output.Length < QueryDim || keys.Length < KvHeadCount * MaxContext * HeadDim
                || values.Length < KvHeadCount * MaxContext * HeadDim || positions < 1 || positions > MaxContext || scores.Length < {{scoresLength}})
                throw new ArgumentException("Attention: a buffer is smaller than its shape.");
            const float Scale = {{Emitter.Float((float)(1.0 / System.Math.Sqrt(s.HeadDim)))}}; // 1 / sqrt(HeadDim)
            ref float q0 = ref MemoryMarshal.GetReference(q);
            ref float k0 = ref MemoryMarshal.GetReference(keys);
            ref float v0 = ref MemoryMarshal.GetReference(values);
            ref float s0 = ref MemoryMarshal.GetReference(scores);
            ref float o0 = ref MemoryMarshal.GetReference(output);
            for (int kvHead = kvHeadStart; kvHead < kvHeadEnd; kvHead++)
            {
                ref float headKeys = ref Unsafe.Add(ref k0, kvHead * MaxContext * HeadDim);
                ref float headValues = ref Unsafe.Add(ref v0, kvHead * MaxContext * HeadDim);
        """;

    /// <summary>
    /// Grouped-query attention with one pass over the KV cache per KV head: each key and value is loaded
    /// once for all GroupSize query heads that share it.
    /// </summary>
    private static void WriteGroupedAttention(SourceWriter w, ModelSpec s)
    {
        bool vectorized = s.HeadDim % Width == 0;
        w.Line($$"""
            /// <summary>
            /// Attention of one token over cache positions [0, positions) for the KV heads in [kvHeadStart, kvHeadEnd) of
            /// KvHeadCount={{s.KvHeadCount}}: one pass over each KV head's keys and one over its values serve all GroupSize={{s.GroupSize}}
            /// query heads that share it. q, output: [QueryDim={{s.QueryDim}}]; keys, values: one layer's cache
            /// [KvHeadCount, MaxContext, HeadDim={{s.HeadDim}}]; scores: [GroupSize, MaxContext] scratch.
            /// </summary>
            {{AttentionPrologue(s, "GroupSize * MaxContext")}}
                    ref float groupQ = ref Unsafe.Add(ref q0, kvHead * GroupSize * HeadDim);   // [GroupSize, HeadDim]
                    ref float groupOut = ref Unsafe.Add(ref o0, kvHead * GroupSize * HeadDim); // [GroupSize, HeadDim]

                    // scores[g, p] = q_g·k[p] / sqrt(HeadDim)
                    for (int p = 0; p < positions; p++)
                    {
                        ref float kp = ref Unsafe.Add(ref headKeys, p * HeadDim);
                        for (int g = 0; g < GroupSize; g++)
                        {
                            ref float qg = ref Unsafe.Add(ref groupQ, g * HeadDim);
            """);
        if (vectorized)
        {
            w.Line("""
                                Vector256<float> dot = Vector256<float>.Zero;
                                for (int i = 0; i < HeadDim; i += 8)
                                    dot = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, (nuint)i), Vector256.LoadUnsafe(ref kp, (nuint)i), dot);
                                Unsafe.Add(ref s0, g * MaxContext + p) = Vector256.Sum(dot) * Scale;
                """);
        }
        else
        {
            w.Line("""
                                float dot = 0f;
                                for (int i = 0; i < HeadDim; i++)
                                    dot += Unsafe.Add(ref qg, i) * Unsafe.Add(ref kp, i);
                                Unsafe.Add(ref s0, g * MaxContext + p) = dot * Scale;
                """);
        }
        w.Line("""
                        }
                    }
                    for (int g = 0; g < GroupSize; g++)
                        KernelMath.Softmax(scores.Slice(g * MaxContext, positions));

                    // output_g = Σ_p scores[g, p]·v[p], accumulated in the output rows
                    output.Slice(kvHead * GroupSize * HeadDim, GroupSize * HeadDim).Clear();
                    for (int p = 0; p < positions; p++)
                    {
                        ref float vp = ref Unsafe.Add(ref headValues, p * HeadDim);
                        for (int g = 0; g < GroupSize; g++)
                        {
                            ref float og = ref Unsafe.Add(ref groupOut, g * HeadDim);
            """);
        if (vectorized)
        {
            w.Line("""
                                Vector256<float> weight = Vector256.Create(Unsafe.Add(ref s0, g * MaxContext + p));
                                for (int i = 0; i < HeadDim; i += 8)
                                    Vector256.FusedMultiplyAdd(weight, Vector256.LoadUnsafe(ref vp, (nuint)i), Vector256.LoadUnsafe(ref og, (nuint)i)).StoreUnsafe(ref og, (nuint)i);
                """);
        }
        else
        {
            w.Line("""
                                float weight = Unsafe.Add(ref s0, g * MaxContext + p);
                                for (int i = 0; i < HeadDim; i++)
                                    Unsafe.Add(ref og, i) += weight * Unsafe.Add(ref vp, i);
                """);
        }
        w.Line("""
                        }
                    }
                }
            }
            """);
    }

    private static void WriteSwiGlu(SourceWriter w)
    {
        w.Line("""
            /// <summary>gate = SiLU(gate) ⊙ up = gate / (1 + exp(-gate)) ⊙ up, over gate's length.</summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            private static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
            {
                if (up.Length < gate.Length)
                    throw new ArgumentException("SwiGlu: up is shorter than gate.");
                ref float g0 = ref MemoryMarshal.GetReference(gate);
                ref float u0 = ref MemoryMarshal.GetReference(up);
                int i = 0;
                for (; i + 8 <= gate.Length; i += 8)
                {
                    Vector256<float> g = Vector256.LoadUnsafe(ref g0, (nuint)i);
                    (g / (Vector256<float>.One + KernelMath.Exp(-g)) * Vector256.LoadUnsafe(ref u0, (nuint)i)).StoreUnsafe(ref g0, (nuint)i);
                }
                for (; i < gate.Length; i++)
                {
                    float g = Unsafe.Add(ref g0, i);
                    Unsafe.Add(ref g0, i) = g / (1f + KernelMath.Exp(-g)) * Unsafe.Add(ref u0, i);
                }
            }
            """);
    }
}
