using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// The Q8_0/Q4_0 matrix kernels: per distinct shape, a rows method over the runtime's kernel layout of the blocks;
/// per distinct row width, the row products (one token, a tile of tokens); per format, the weight loaders and
/// integer dot products of 8 blocks at a time.
/// </summary>
internal static class BlockMatMulEmitter
{
    /// <summary>
    /// Weight blocks per step of the Q8_0/Q4_0 row loop: 8 integer block sums reduce to one Vector256, so
    /// conversion and scaling cost one instruction per 8 blocks instead of one per block.
    /// </summary>
    private const int StepBlocks = 8;

    /// <summary>
    /// Blocks per group of the runtime's kernel layout of Q8_0/Q4_0 rows (the architecture table's KernelGroupBlocks):
    /// each group is the blocks' F16 scales, then their weights.
    /// </summary>
    private const int GroupBlocks = LlamaArchitecture.KernelGroupBlocks;

    /// <summary>Bytes of one block: its F16 scale and its weights (the architecture table's block layouts).</summary>
    private static int BlockBytes(ComputeFormat format) => format == ComputeFormat.Q8_0 ? LlamaArchitecture.Q8_0BlockBytes : LlamaArchitecture.Q4_0BlockBytes;

    /// <summary>Bytes of one block's weights: 32 int8 (Q8_0) or 16 bytes of 4-bit values (Q4_0).</summary>
    private static int QuantBytes(ComputeFormat format) => BlockBytes(format) - 2;

    /// <summary>The one-token loop of a block-quantized kernel, for the header.</summary>
    public static string DecodeSummary(MatMulKernel k, bool cacheChoiceAtRunTime)
    {
        string prefetch = k.DecodePrefetch > 0
            ? $", {(k.Activations == ActivationKind.Q8_K ? "each super-block prefetching" : "each row prefetched")} {k.DecodePrefetch / 1024} KB ahead {(cacheChoiceAtRunTime ? "when the model does not fit this machine's last-level cache" : "(the model streams from memory)")}"
            : "";
        if (!FormatFacts.InKernelLayout(k.Format))
            return $"QuantizedRows.{k.Format}Row over the {Blocks(k)} {k.Format} blocks of each row as the file stores them{prefetch}";
        int blocks = Blocks(k), groups = blocks / GroupBlocks, tail = blocks % GroupBlocks;
        string steps = blocks >= StepBlocks ? $"{StepBlocks} blocks per step (their scales converted and integer sums reduced together)" : "one block per step";
        return $"{steps}, {groups} group(s) of {GroupBlocks} blocks{(tail > 0 ? $" and one of {tail}" : "")} per row{prefetch}";
    }

    /// <summary>
    /// A block-quantized matrix kernel: x is quantized to int8 blocks first (with each block's scale and sum), then each
    /// output is one call of the row product for its width: a tile of tokens per row in prefill, one token in decode.
    /// Q8_0/Q4_0 rows are the generated row products over the kernel layout (<see cref="WriteRow"/>); the other formats'
    /// are the runtime's QuantizedRows over the stored blocks.
    /// </summary>
    public static void Write(SourceWriter w, MatMulKernel k, int tile, bool cacheChoiceAtRunTime)
    {
        int blocks = Blocks(k);
        bool super = k.Activations == ActivationKind.Q8_K;
        bool kernelLayout = FormatFacts.InKernelLayout(k.Format);
        int sums = super ? k.Cols / FormatFacts.SuperBlockSumWidth : blocks;
        string sumType = k.Activations switch { ActivationKind.Q8_K => "short", ActivationKind.Q8_1 => "float", _ => "int" };
        string activations = k.Activations switch
        {
            ActivationKind.Q8_K => $"x, already quantized: [tokens, {k.Cols}] int8 as Q8_K super-blocks, with [tokens, {blocks}] F32 scales and [tokens, {sums}] sums of 16",
            ActivationKind.Q8_1 => $"x, already quantized: [tokens, {k.Cols}] int8 as Q8_1 blocks, with [tokens, {blocks}] block scales and F16(d·Σq) per block",
            _ => $"x, already quantized: [tokens, {k.Cols}] int8 with [tokens, {blocks}] block scales and block sums",
        };
        string layout = kernelLayout ? $"the runtime's kernel layout ({blocks} blocks of {FormatFacts.BlockBytes(k.Format)} bytes per row, see {RowName(k.Format, k.Cols, 1)})"
            : $"llama.cpp's blocks as stored ({blocks} blocks of {FormatFacts.BlockBytes(k.Format)} bytes per row)";
        string tileProduct = kernelLayout
            ? $"{RowName(k.Format, k.Cols, tile)}(ref Unsafe.Add(ref w0, r * RowBytes), ref qt, ref dt, ref st)"
            : $"QuantizedRows.{k.Format}Row{tile}(ref Unsafe.Add(ref w0, r * RowBytes), Blocks, ref qt, ref dt, ref st, Cols)";
        w.Line($$"""
            /// <summary>
            /// Rows [rowStart, rowEnd) of y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>.
            /// W: {{k.Format}} [{{k.Rows}}, {{k.Cols}}] in {{layout}};
            /// {{activations}}; y: [tokens, {{k.Rows}}].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            private static void {{k.Name}}Rows(ReadOnlySpan<byte> w, ReadOnlySpan<sbyte> xQuantized, ReadOnlySpan<float> xScales, ReadOnlySpan<{{sumType}}> xSums, Span<float> y, int tokens, bool accumulate, int rowStart, int rowEnd)
            {
                const int Rows = {{k.Rows}}, Cols = {{k.Cols}}, Blocks = {{blocks}}, {{(super ? $"Sums = {sums}, " : "")}}RowBytes = Blocks * {{FormatFacts.BlockBytes(k.Format)}}, RowBlock = {{k.RowBlock}};
                // The kernel's only bounds check; below, every access is a ref offset within these lengths.
                if (tokens < 0 || rowStart < 0 || rowEnd > Rows || w.Length < Rows * RowBytes || y.Length < (long)tokens * Rows
                    || xQuantized.Length < (long)tokens * Cols || xScales.Length < (long)tokens * Blocks || xSums.Length < (long)tokens * {{(super ? "Sums" : "Blocks")}})
                    throw new ArgumentException("{{k.Name}}: a buffer is smaller than its shape.");
                ref byte w0 = ref MemoryMarshal.GetReference(w);
                ref sbyte q0 = ref MemoryMarshal.GetReference(xQuantized);
                ref float d0 = ref MemoryMarshal.GetReference(xScales);
                ref {{sumType}} s0 = ref MemoryMarshal.GetReference(xSums);
                ref float y0 = ref MemoryMarshal.GetReference(y);

                // Prefill: rows in blocks of RowBlock (about {{(long)k.RowBlock * blocks * FormatFacts.BlockBytes(k.Format) / 1024}} KB of weights, which stay in cache) and
                // {{tile}} tokens per pass over them (each row read once for all {{tile}}).
                for (int rowBlock = rowStart; rowBlock < rowEnd; rowBlock += RowBlock)
                {
                    for (int t = 0; t + {{tile}} <= tokens; t += {{tile}})
                    {
                        ref sbyte qt = ref Unsafe.Add(ref q0, t * Cols);
                        ref float dt = ref Unsafe.Add(ref d0, t * Blocks);
                        ref {{sumType}} st = ref Unsafe.Add(ref s0, t * {{(super ? "Sums" : "Blocks")}});
                        for (int r = rowBlock; r < Math.Min(rowBlock + RowBlock, rowEnd); r++)
                        {
                            Vector128<float> sums = {{tileProduct}};
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
                    ref {{sumType}} st = ref Unsafe.Add(ref s0, t * {{(super ? "Sums" : "Blocks")}});
            {{DecodeRowLoop(k, cacheChoiceAtRunTime)}}
                }
            }
            """);
    }

    /// <summary>The one-token loop over a quantized kernel's rows, with the planner's prefetch when the model streams from memory.</summary>
    private static string DecodeRowLoop(MatMulKernel k, bool cacheChoiceAtRunTime)
    {
        string rowProduct = FormatFacts.InKernelLayout(k.Format)
            ? $"{RowName(k.Format, k.Cols, 1)}(ref row, ref qt, ref dt, ref st)"
            : $"QuantizedRows.{k.Format}Row(ref row, Blocks, ref qt, ref dt, ref st)";
        string product = $"Store(ref Unsafe.Add(ref y0, t * Rows + r), {rowProduct}, accumulate);";
        if (k.DecodePrefetch > 0 && k.Activations == ActivationKind.Q8_K)
        {
            // The K formats' row products prefetch as they go, a few lines per super-block (see QuantizedRows).
            string distance = cacheChoiceAtRunTime ? $"WeightsFitCache ? 0 : {k.DecodePrefetch}" : Emitter.Int(k.DecodePrefetch);
            return $$"""
                        // {{(cacheChoiceAtRunTime ? "Weights that stream from memory" : "The weights stream from memory")}}: each super-block requests the bytes {{k.DecodePrefetch / 1024}} KB ahead of it, so they are in cache by their turn.
                        int prefetch = {{distance}};
                        for (int r = rowStart; r < rowEnd; r++)
                            {{product.Replace("ref row", "ref Unsafe.Add(ref w0, r * RowBytes)").Replace("ref st)", "ref st, prefetch)")}}
                """;
        }
        if (k.DecodePrefetch == 0)
            return $$"""
                        for (int r = rowStart; r < rowEnd; r++)
                            {{product.Replace("ref row", "ref Unsafe.Add(ref w0, r * RowBytes)")}}
                """;
        return $$"""
                        for (int r = rowStart; r < rowEnd; r++)
                        {
                            ref byte row = ref Unsafe.Add(ref w0, r * RowBytes);
                            {{(cacheChoiceAtRunTime
                                ? $"// Weights that stream from memory: the row {k.DecodePrefetch / 1024} KB ahead is requested now, so it is in cache by its turn.\n            if (!WeightsFitCache)\n                Prefetch.Lines(ref Unsafe.Add(ref row, {k.DecodePrefetch}), RowBytes);"
                                : $"// The weights stream from memory: the row {k.DecodePrefetch / 1024} KB ahead is requested now, so it is in cache by its turn.\n            Prefetch.Lines(ref Unsafe.Add(ref row, {k.DecodePrefetch}), RowBytes);")}}
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
    public static void WriteRow(SourceWriter w, ComputeFormat format, int cols, int tokens)
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
        w.Line("[MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]");
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
                Step("KernelMath.HalfToSingle8(ref group)", $"ref Unsafe.Add(ref group, {2 * GroupBlocks})", "b", 0);
                Step($"KernelMath.HalfToSingle8(ref Unsafe.Add(ref group, {2 * StepBlocks}))", $"ref Unsafe.Add(ref group, {2 * GroupBlocks + StepBlocks * quant})", $"b + {StepBlocks}", 1);
            }
        }
        if (tail > 0)
        {
            w.Line($"// Blocks {first}..{blocks - 1}: the last group, {tail} F16 scales then {tail} blocks of weights.");
            w.Line(first == 0 ? "ref byte tail = ref row;" : $"ref byte tail = ref Unsafe.Add(ref row, {first * blockBytes});");
            if (tail >= StepBlocks)
                Step("KernelMath.HalfToSingle8(ref tail)", $"ref Unsafe.Add(ref tail, {2 * tail})", Emitter.Int(first), 0);
            if (tail % StepBlocks != 0)
            {
                using (w.Block($"for (int j = {(tail >= StepBlocks ? StepBlocks : 0)}; j < {tail}; j++)"))
                {
                    string block = Plus(first, "j");
                    w.Line("float scale = KernelMath.HalfToSingle(ref Unsafe.Add(ref tail, 2 * j));");
                    for (int i = 0; i < (one ? 1 : tokens); i++)
                    {
                        string sum = one ? sums[1] : sums[i], tokenBlock = Plus(i * blocks, block);
                        w.Line($"{sum} = Vector256.FusedMultiplyAdd(Vector256.Create(scale * Unsafe.Add(ref xScales, {tokenBlock})),");
                        w.Line($"    Vector256.ConvertToSingle({format}Block(ref Unsafe.Add(ref tail, {2 * tail} + j * {quant}), ref Unsafe.Add(ref x, {Plus(i * cols, Times(block, 32))}), Unsafe.Add(ref xSums, {tokenBlock}))), {sum});");
                    }
                }
            }
        }
        w.Line(one ? "return Vector256.Sum(sum0 + sum1);" : $"return KernelMath.Sum4({string.Join(", ", sums)});");
    }

    /// <summary><paramref name="constant"/> + <paramref name="expression"/> as short as it can be written.</summary>
    private static string Plus(int constant, string expression) =>
        constant == 0 ? expression : int.TryParse(expression, out int value) ? Emitter.Int(constant + value) : $"{constant} + {expression}";

    /// <summary><paramref name="expression"/> · <paramref name="factor"/>, folded when the expression is a number.</summary>
    private static string Times(string expression, int factor) =>
        int.TryParse(expression, out int value) ? Emitter.Int(value * factor) : expression.Contains(' ') ? $"({expression}) * {factor}" : $"{expression} * {factor}";

    /// <summary>An element offset for LoadUnsafe: a constant as is, an expression as nuint.</summary>
    private static string Index(string expression) =>
        int.TryParse(expression, out _) ? expression : expression.Contains(' ') ? $"(nuint)({expression})" : $"(nuint){expression}";

    /// <summary>
    /// The weight loaders and integer dot products of 8 blocks (and of one block, for a last group's odd blocks) per
    /// format the kernels use. What does not depend on the format (quantizing activations, the int8 dot product,
    /// F16 scales, the sums of 8 blocks) is the runtime's: <c>BlockKernels</c> and <c>KernelMath</c>.
    /// </summary>
    public static void WriteHelpers(SourceWriter w, ForwardPlan plan)
    {
        MatMulKernel[] quantized = plan.MatMuls.Where(k => FormatFacts.InKernelLayout(k.Format)).ToArray();
        bool first = true;
        // Each helper's text, a blank line between two.
        void Helper(string text)
        {
            if (!first)
                w.Line();
            first = false;
            w.Line(text);
        }

        foreach (ComputeFormat format in quantized.Select(k => k.Format).Distinct())
        {
            MatMulKernel[] ofFormat = quantized.Where(k => k.Format == format).ToArray();
            if (format == ComputeFormat.Q8_0)
            {
                Helper("""
                    /// <summary>The 32 weights of a Q8_0 block in the kernel layout: unsigned bytes, each weight + 128.</summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
                    private static Vector256<byte> Q8_0Weights(ref byte weights) => Vector256.LoadUnsafe(ref weights);

                    /// <summary>The same weights as int8 again (for CPUs without AVX-VNNI).</summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
                    private static Vector256<sbyte> Q8_0Signed(Vector256<byte> weights) => (weights ^ Vector256.Create((byte)0x80)).AsSByte();
                    """);
            }
            else
            {
                Helper("""
                    /// <summary>
                    /// The 32 weights of a Q4_0 block, each + 8, as bytes in [0, 15]: byte j of the block's 16 holds weight j
                    /// in its low nibble and weight j + 16 in its high nibble.
                    /// </summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
                    private static Vector256<byte> Q4_0Weights(ref byte weights)
                    {
                        Vector128<byte> packed = Vector128.LoadUnsafe(ref weights);
                        return Vector256.Create(packed & Vector128.Create((byte)0x0F), Vector128.ShiftRightLogical(packed, 4));
                    }

                    /// <summary>The same weights as int8 in [-8, 7] (for CPUs without AVX-VNNI).</summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
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
                Helper($$"""
                    /// <summary>
                    /// The integer dot products of 8 consecutive {{format}} blocks' weights (kernel layout, {{quant}} bytes each from
                    /// <paramref name="weights"/>) with 256 int8 activations whose block sums are <paramref name="xSums"/>: lane i is Σ w·x of block i.
                    /// </summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
                    private static Vector256<int> {{format}}Sums8(ref byte weights, ref sbyte x, ref int xSums)
                    {
                        if (AvxVnni.IsSupported)
                        {
                            // vpdpbusd multiplies the stored unsigned weights by x as they are; the {{offset}}·Σx they add is taken off per block.
                            return BlockKernels.Sum8(
                                {{string.Join(",\n            ", Enumerable.Range(0, StepBlocks).Select(i => $"AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, {Weights(i)}, {X(i)})"))}})
                                - (Vector256.LoadUnsafe(ref xSums) << {{shift}});
                        }
                        return BlockKernels.Sum8(
                            {{string.Join(",\n        ", Enumerable.Range(0, StepBlocks).Select(i => $"BlockKernels.DotInt32({format}Signed({Weights(i)}), {X(i)})"))}});
                    }
                    """);
            }
            if (ofFormat.Any(k => Blocks(k) % GroupBlocks % StepBlocks != 0))
            {
                Helper($$"""
                    /// <summary>One {{format}} block's weights (kernel layout) · 32 int8 activations whose sum is <paramref name="xSum"/>, in 8 int lanes that sum to Σ w·x.</summary>
                    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
                    private static Vector256<int> {{format}}Block(ref byte weights, ref sbyte x, int xSum)
                    {
                        // With AVX-VNNI the {{offset}}·Σx the offset weights add is taken off up front, spread over the 8 lanes.
                        if (AvxVnni.IsSupported)
                            return AvxVnni.MultiplyWideningAndAdd(Vector256.Create({{(shift == 3 ? "-xSum" : $"-(xSum << {shift - 3})")}}), {{format}}Weights(ref weights), Vector256.LoadUnsafe(ref x));
                        return BlockKernels.DotInt32({{format}}Signed({{format}}Weights(ref weights)), Vector256.LoadUnsafe(ref x));
                    }
                    """);
            }
        }
        w.Line();
    }

    private static int Blocks(MatMulKernel k) => k.Cols / FormatFacts.BlockWeights(k.Format);
}
