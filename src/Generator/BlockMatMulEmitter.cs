using System;
using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// The block-quantized matrix kernels: per distinct shape, a rows method. Q8_0/Q4_0 run on the runtime's kernel layout
/// (groups of 8 interleaved rows) through the group products generated per row width: one token × 8 rows, and in
/// prefill a tile of 16 rows × 4 tokens; the other formats' row products are the runtime's QuantizedRows.
/// </summary>
internal static class BlockMatMulEmitter
{
    /// <summary>Rows per group of the runtime's kernel layout of Q8_0/Q4_0 matrices (the architecture table's KernelGroupRows).</summary>
    private const int GroupRows = LlamaArchitecture.KernelGroupRows;

    /// <summary>Bytes of one block: its F16 scale and its weights (the architecture table's block layouts).</summary>
    private static int BlockBytes(ComputeFormat format) => format == ComputeFormat.Q8_0 ? LlamaArchitecture.Q8_0BlockBytes : LlamaArchitecture.Q4_0BlockBytes;

    /// <summary>Bytes of one block's weights: 32 int8 (Q8_0) or 16 bytes of 4-bit values (Q4_0).</summary>
    private static int QuantBytes(ComputeFormat format) => BlockBytes(format) - 2;

    /// <summary>The one-token loop of a block-quantized kernel, for the header.</summary>
    public static string DecodeSummary(MatMulKernel k, bool cacheChoiceAtRunTime)
    {
        string prefetch = k.DecodePrefetch > 0
            ? $", {(k.Activations == ActivationKind.Q8_K ? "each super-block prefetching" : FormatFacts.InKernelLayout(k.Format) ? "each block of a group prefetching" : "each row prefetched")} {k.DecodePrefetch / 1024} KB ahead {(cacheChoiceAtRunTime ? "when the model does not fit this machine's last-level cache" : "(the model streams from memory)")}"
            : "";
        if (!FormatFacts.InKernelLayout(k.Format))
            return $"QuantizedRows.{k.Format}Row over the {Blocks(k)} {k.Format} blocks of each row as the file stores them{prefetch}";
        return $"8 rows per step ({GroupName(k.Format, k.Cols, 1)}: the byte dot products of a group's interleaved rows, one lane per row, over {Blocks(k)} blocks){prefetch}";
    }

    /// <summary>The prefill loop of a block-quantized kernel, for the header.</summary>
    public static string PrefillSummary(MatMulKernel k, int tile) => FormatFacts.InKernelLayout(k.Format)
        ? $"in prefill {2 * GroupRows} rows × {tile} tokens per tile ({GroupName(k.Format, k.Cols, tile)}: a pair of groups, its scales converted once for every tile)"
        : k.Format == ComputeFormat.Q6_K
            ? $"in prefill {2 * GroupRows} rows × {tile} tokens per tile ({GroupName(k.Format, k.Cols, tile)}: 16 rows unpacked once by Q6KGroups for every tile)"
            : $"in prefill 1 row × {tile} tokens per pass over blocks of {k.RowBlock} rows";

    /// <summary>
    /// A block-quantized matrix kernel: x is quantized to int8 blocks first (with each block's scale and sum), then each
    /// output comes from a row product: the runtime's QuantizedRows over the stored blocks (a tile of tokens per row in
    /// prefill, one token in decode), or for Q8_0/Q4_0 the generated group products over the kernel layout (<see cref="WriteGrouped"/>).
    /// </summary>
    public static void Write(SourceWriter w, MatMulKernel k, int tile, bool cacheChoiceAtRunTime)
    {
        if (FormatFacts.InKernelLayout(k.Format))
        {
            WriteGrouped(w, k, tile, cacheChoiceAtRunTime);
            return;
        }
        if (k.Format == ComputeFormat.Q6_K)
        {
            WriteQ6K(w, k, tile, cacheChoiceAtRunTime);
            return;
        }
        int blocks = Blocks(k);
        bool super = k.Activations == ActivationKind.Q8_K;
        int sums = super ? k.Cols / FormatFacts.SuperBlockSumWidth : blocks;
        string sumType = k.Activations switch { ActivationKind.Q8_K => "short", ActivationKind.Q8_1 => "float", _ => "int" };
        string activations = k.Activations switch
        {
            ActivationKind.Q8_K => $"x, already quantized: [tokens, {k.Cols}] int8 as Q8_K super-blocks, with [tokens, {blocks}] F32 scales and [tokens, {sums}] sums of 16",
            ActivationKind.Q8_1 => $"x, already quantized: [tokens, {k.Cols}] int8 as Q8_1 blocks, with [tokens, {blocks}] block scales and F16(d·Σq) per block",
            _ => $"x, already quantized: [tokens, {k.Cols}] int8 with [tokens, {blocks}] block scales and block sums",
        };
        w.Line($$"""
            /// <summary>
            /// Rows [rowStart, rowEnd) of y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>.
            /// W: {{k.Format}} [{{k.Rows}}, {{k.Cols}}] in llama.cpp's blocks as stored ({{blocks}} blocks of {{FormatFacts.BlockBytes(k.Format)}} bytes per row);
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
                            Vector128<float> sums = QuantizedRows.{{k.Format}}Row{{tile}}(ref Unsafe.Add(ref w0, r * RowBytes), Blocks, ref qt, ref dt, ref st, Cols);
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

    /// <summary>
    /// A Q6_K kernel over the blocks as stored: in prefill, 16 rows at a time are unpacked once into the interleaved
    /// form of the kernel layout (the runtime's Q6KGroups) and every tile of tokens runs over them (<see cref="WriteQ6KGroupProducts"/>);
    /// the tokens after the last tile, and all of decode, go one token × one row at a time as the other stored formats do.
    /// </summary>
    private static void WriteQ6K(SourceWriter w, MatMulKernel k, int tile, bool cacheChoiceAtRunTime)
    {
        int blocks = Blocks(k), sums = k.Cols / FormatFacts.SuperBlockSumWidth;
        w.Line($$"""
            /// <summary>
            /// Rows [rowStart, rowEnd) of y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>.
            /// W: Q6_K [{{k.Rows}}, {{k.Cols}}] in llama.cpp's blocks as stored ({{blocks}} blocks of {{FormatFacts.BlockBytes(k.Format)}} bytes per row);
            /// x, already quantized: [tokens, {{k.Cols}}] int8 as Q8_K super-blocks, with [tokens, {{blocks}}] F32 scales and [tokens, {{sums}}] sums of 16; y: [tokens, {{k.Rows}}].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            private static void {{k.Name}}Rows(ReadOnlySpan<byte> w, ReadOnlySpan<sbyte> xQuantized, ReadOnlySpan<float> xScales, ReadOnlySpan<short> xSums, Span<float> y, int tokens, bool accumulate, int rowStart, int rowEnd)
            {
                const int Rows = {{k.Rows}}, Cols = {{k.Cols}}, Blocks = {{blocks}}, Sums = {{sums}}, RowBytes = Blocks * {{FormatFacts.BlockBytes(k.Format)}};
                // The kernel's only bounds check; below, every access is a ref offset within these lengths.
                if (tokens < 0 || rowStart < 0 || rowEnd > Rows || w.Length < Rows * RowBytes || y.Length < (long)tokens * Rows
                    || xQuantized.Length < (long)tokens * Cols || xScales.Length < (long)tokens * Blocks || xSums.Length < (long)tokens * Sums)
                    throw new ArgumentException("{{k.Name}}: a buffer is smaller than its shape.");
                ref byte w0 = ref MemoryMarshal.GetReference(w);
                ref sbyte q0 = ref MemoryMarshal.GetReference(xQuantized);
                ref float d0 = ref MemoryMarshal.GetReference(xScales);
                ref short s0 = ref MemoryMarshal.GetReference(xSums);
                ref float y0 = ref MemoryMarshal.GetReference(y);
                int tiled = tokens - tokens % {{tile}};

                // Prefill: 16 rows at a time unpacked once (about {{(long)blocks * Q6KUnpackedBytes / 1024}} KB, which stay in cache), then every tile of {{tile}} tokens over them.
                for (int r = tiled > 0 ? rowStart : rowEnd; r < rowEnd; r += Q6KGroups.Rows)
                {
                    int rowCount = Math.Min(Q6KGroups.Rows, rowEnd - r);
                    ref byte unpacked = ref Q6KGroups.Unpack(ref Unsafe.Add(ref w0, r * RowBytes), RowBytes, rowCount, Blocks);
                    for (int t = 0; t < tiled; t += {{tile}})
                        {{GroupName(k.Format, k.Cols, tile)}}(ref unpacked, ref Unsafe.Add(ref q0, t * Cols), ref Unsafe.Add(ref d0, t * Blocks), ref Unsafe.Add(ref s0, t * Sums),
                            ref Unsafe.Add(ref y0, t * Rows + r), Rows, rowCount, accumulate);
                }

                // The remaining tokens (all of decode) one at a time.
                for (int t = tiled; t < tokens; t++)
                {
                    ref sbyte qt = ref Unsafe.Add(ref q0, t * Cols);
                    ref float dt = ref Unsafe.Add(ref d0, t * Blocks);
                    ref short st = ref Unsafe.Add(ref s0, t * Sums);
            {{DecodeRowLoop(k, cacheChoiceAtRunTime)}}
                }
            }
            """);
    }

    /// <summary>Bytes of one super-block of 16 rows unpacked by the runtime's Q6KGroups (its SuperBlockBytes).</summary>
    private const int Q6KUnpackedBytes = 5696;

    /// <summary>The one-token loop over a stored-block kernel's rows, with the planner's prefetch when the model streams from memory.</summary>
    private static string DecodeRowLoop(MatMulKernel k, bool cacheChoiceAtRunTime)
    {
        string product = $"Store(ref Unsafe.Add(ref y0, t * Rows + r), QuantizedRows.{k.Format}Row(ref Unsafe.Add(ref w0, r * RowBytes), Blocks, ref qt, ref dt, ref st{{prefetch}}), accumulate);";
        if (k.DecodePrefetch > 0 && k.Activations == ActivationKind.Q8_K)
        {
            // The K formats' row products prefetch as they go, a few lines per super-block (see QuantizedRows).
            string distance = cacheChoiceAtRunTime ? $"WeightsFitCache ? 0 : {k.DecodePrefetch}" : Emitter.Int(k.DecodePrefetch);
            return $$"""
                        // {{(cacheChoiceAtRunTime ? "Weights that stream from memory" : "The weights stream from memory")}}: each super-block requests the bytes {{k.DecodePrefetch / 1024}} KB ahead of it, so they are in cache by their turn.
                        int prefetch = {{distance}};
                        for (int r = rowStart; r < rowEnd; r++)
                            {{product.Replace("{prefetch}", ", prefetch")}}
                """;
        }
        if (k.DecodePrefetch == 0)
            return $$"""
                        for (int r = rowStart; r < rowEnd; r++)
                            {{product.Replace("{prefetch}", "")}}
                """;
        return $$"""
                        for (int r = rowStart; r < rowEnd; r++)
                        {
                            ref byte row = ref Unsafe.Add(ref w0, r * RowBytes);
                            {{(cacheChoiceAtRunTime
                                ? $"// Weights that stream from memory: the row {k.DecodePrefetch / 1024} KB ahead is requested now, so it is in cache by its turn.\n            if (!WeightsFitCache)\n                Prefetch.Lines(ref Unsafe.Add(ref row, {k.DecodePrefetch}), RowBytes);"
                                : $"// The weights stream from memory: the row {k.DecodePrefetch / 1024} KB ahead is requested now, so it is in cache by its turn.\n            Prefetch.Lines(ref Unsafe.Add(ref row, {k.DecodePrefetch}), RowBytes);")}}
                            {{product.Replace("ref Unsafe.Add(ref w0, r * RowBytes)", "ref row").Replace("{prefetch}", "")}}
                        }
                """;
    }

    /// <summary>
    /// A Q8_0/Q4_0 kernel over the kernel layout: rows go by groups of 8 (a partial last group holds padding rows, computed
    /// and not stored). Prefill takes pairs of whole groups, converts their scales to F32 once and runs every tile of
    /// 4 tokens over the pair's weights, which stay in cache meanwhile; the tokens after the last tile, the groups left
    /// over, and all of decode go one token × one group at a time.
    /// </summary>
    private static void WriteGrouped(SourceWriter w, MatMulKernel k, int tile, bool cacheChoiceAtRunTime)
    {
        int blocks = Blocks(k), groups = (k.Rows + GroupRows - 1) / GroupRows;
        bool super = k.Format == ComputeFormat.Q4_K;
        // Q4_K reads Q8_K activations: one F32 scale per super-block and the int16 sums of each 16 values.
        string sumType = super ? "short" : "int", sums = super ? "Sums" : "Blocks";
        string activations = super
            ? $"x, already quantized: [tokens, {k.Cols}] int8 as Q8_K super-blocks, with [tokens, {blocks}] F32 scales and [tokens, {k.Cols / FormatFacts.SuperBlockSumWidth}] sums of 16"
            : $"x, already quantized: [tokens, {k.Cols}] int8 with [tokens, {blocks}] block scales and block sums";
        string scratch = super
            ? $"Span<int> scales = stackalloc int[Blocks * {2 * Q4KScratchInts}]; // [Blocks, 2 groups, {Q4KScratchInts}]: the pair's unpacked scales, mins and F32 d, −dmin per super-block ({ScalesName(k.Format, k.Cols)})\n        ref int scales0 = ref MemoryMarshal.GetReference(scales);"
            : $"Span<float> scales = stackalloc float[Blocks * {2 * GroupRows}]; // [Blocks, {2 * GroupRows}]: the pair's row scales per block, as F32\n        ref float scales0 = ref MemoryMarshal.GetReference(scales);";
        string prefetch = k.DecodePrefetch == 0 ? "0" : cacheChoiceAtRunTime ? $"WeightsFitCache ? 0 : {k.DecodePrefetch}" : Emitter.Int(k.DecodePrefetch);
        string prefetchComment = k.DecodePrefetch == 0 ? ""
            : $"\n    // {(cacheChoiceAtRunTime ? "Weights that stream from memory" : "The weights stream from memory")}: each block of a group requests the bytes {k.DecodePrefetch / 1024} KB ahead of it, so they are in cache by their turn.";
        w.Line($$"""
            /// <summary>
            /// Rows [rowStart, rowEnd) of y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>;
            /// rowStart is a multiple of {{GroupRows}}, rowEnd too or {{k.Rows}}.
            /// W: {{k.Format}} [{{k.Rows}}, {{k.Cols}}] in the runtime's kernel layout ({{groups}} group(s) of {{GroupRows}} interleaved rows, {{blocks}} blocks each, see {{GroupName(k.Format, k.Cols, 1)}});
            /// {{activations}}; y: [tokens, {{k.Rows}}].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            private static void {{k.Name}}Rows(ReadOnlySpan<byte> w, ReadOnlySpan<sbyte> xQuantized, ReadOnlySpan<float> xScales, ReadOnlySpan<{{sumType}}> xSums, Span<float> y, int tokens, bool accumulate, int rowStart, int rowEnd)
            {
                const int Rows = {{k.Rows}}, Cols = {{k.Cols}}, Blocks = {{blocks}}, {{(super ? $"Sums = {k.Cols / FormatFacts.SuperBlockSumWidth}, " : "")}}Groups = {{groups}}, GroupBytes = {{GroupRows}} * Blocks * {{FormatFacts.BlockBytes(k.Format)}};
                // The kernel's only bounds check; below, every access is a ref offset within these lengths.
                if (tokens < 0 || rowStart < 0 || rowStart % {{GroupRows}} != 0 || rowEnd > Rows || w.Length < Groups * GroupBytes || y.Length < (long)tokens * Rows
                    || xQuantized.Length < (long)tokens * Cols || xScales.Length < (long)tokens * Blocks || xSums.Length < (long)tokens * {{sums}})
                    throw new ArgumentException("{{k.Name}}: a buffer is smaller than its shape, or the rows do not start a group.");
                ref byte w0 = ref MemoryMarshal.GetReference(w);
                ref sbyte q0 = ref MemoryMarshal.GetReference(xQuantized);
                ref float d0 = ref MemoryMarshal.GetReference(xScales);
                ref {{sumType}} s0 = ref MemoryMarshal.GetReference(xSums);
                ref float y0 = ref MemoryMarshal.GetReference(y);
                int firstGroup = rowStart / {{GroupRows}}, wholeGroups = rowEnd / {{GroupRows}}, endGroup = (rowEnd + {{GroupRows - 1}}) / {{GroupRows}};
                int tiled = tokens - tokens % {{tile}};

                // Prefill: pairs of whole groups, each pair's weights (about {{2 * GroupRows * (long)blocks * FormatFacts.BlockBytes(k.Format) / 1024}} KB) read from memory once and from cache by every other tile.
                int pairEnd = tiled > 0 ? firstGroup + (wholeGroups - firstGroup) / 2 * 2 : firstGroup;
                if (pairEnd > firstGroup)
                {
                    {{scratch}}
                    for (int g = firstGroup; g < pairEnd; g += 2)
                    {
                        ref byte pair = ref Unsafe.Add(ref w0, g * GroupBytes);
                        {{ScalesName(k.Format, k.Cols)}}(ref pair, ref scales0);
                        for (int t = 0; t < tiled; t += {{tile}})
                            {{GroupName(k.Format, k.Cols, tile)}}(ref pair, ref scales0, ref Unsafe.Add(ref q0, t * Cols), ref Unsafe.Add(ref d0, t * Blocks), ref Unsafe.Add(ref s0, t * {{sums}}),
                                ref Unsafe.Add(ref y0, t * Rows + g * {{GroupRows}}), Rows, accumulate);
                    }
                }

                // One token × one group at a time: the tokens after the last tile for the pairs, every token for the other groups (all of decode).{{prefetchComment}}
                int prefetch = {{prefetch}};
                for (int g = firstGroup; g < endGroup; g++)
                {
                    ref byte group = ref Unsafe.Add(ref w0, g * GroupBytes);
                    int rows = Math.Min({{GroupRows}}, rowEnd - g * {{GroupRows}});
                    for (int t = g < pairEnd ? tiled : 0; t < tokens; t++)
                    {
                        Vector256<float> sums = {{GroupName(k.Format, k.Cols, 1)}}(ref group, ref Unsafe.Add(ref q0, t * Cols), ref Unsafe.Add(ref d0, t * Blocks), ref Unsafe.Add(ref s0, t * {{sums}}), prefetch);
                        StoreGroup(ref Unsafe.Add(ref y0, t * Rows + g * {{GroupRows}}), sums, rows, accumulate);
                    }
                }
            }
            """);
    }

    /// <summary>The group product of a Q8_0/Q4_0 matrix of <paramref name="cols"/> columns for <paramref name="tokens"/> token(s), or its scales converter.</summary>
    private static string GroupName(ComputeFormat format, int cols, int tokens) => tokens == 1 ? $"{format}Group{cols}" : $"{format}Pair{cols}x{tokens}";

    private static string ScalesName(ComputeFormat format, int cols) => $"{format}PairScales{cols}";

    /// <summary>
    /// The group products of Q8_0/Q4_0 matrices <paramref name="cols"/> wide over the kernel layout: one token × one group
    /// (8 rows), and <paramref name="tile"/> tokens × a pair of groups (16 rows) with the pair's scales converted first.
    /// In both, per block: an int32 lane per row starts at −offset·Σx (the weights are stored + 128 or + 8), gains the
    /// byte dot products of the block's 4-byte slices (each slice 4 weights of each of 8 rows against 4 activation
    /// bytes broadcast to every lane), and is scaled by the row's and the token's block scales into a float sum.
    /// </summary>
    public static void WriteGroupProducts(SourceWriter w, ComputeFormat format, int cols, int tile)
    {
        if (format == ComputeFormat.Q4_K)
        {
            WriteQ4KGroupProducts(w, cols, tile);
            return;
        }
        if (format == ComputeFormat.Q6_K)
        {
            WriteQ6KGroupProducts(w, cols, tile);
            return;
        }
        int blocks = cols / ForwardPlanner.QuantBlock, blockBytes = FormatFacts.BlockBytes(format);
        bool q8 = format == ComputeFormat.Q8_0;
        int quant = blockBytes - 2, weightsStart = GroupRows * 2 * blocks, blockWeights = GroupRows * quant, shift = q8 ? 7 : 3;
        string layout = $"[{blocks} blocks × {GroupRows} F16 row scales][{blocks} blocks × {quant / 4} slices × {GroupRows} rows × 4 bytes]"
            + (q8 ? " (weights + 128, unsigned)" : " (nibble bytes, each weight + 8: byte j holds weights j and j + 16)");
        w.Line($$"""
            /// <summary>
            /// One token × one group of 8 rows of a {{format}} matrix {{cols}} wide: lane r is Σ_b wScale[r, b]·xScales[b]·Σ_i w[r, b, i]·x[b, i].
            /// group: {{layout}}; x: [{{cols}}] int8; xScales, xSums: [{{blocks}}] (each block's scale and the sum of its int8 values).
            /// <paramref name="prefetch"/>: bytes ahead of each block to request (0: none).
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
            private static Vector256<float> {{GroupName(format, cols, 1)}}(ref byte group, ref sbyte x, ref float xScales, ref int xSums, int prefetch)
            {
                // One float sum, block after block: the order of the prefill tile's sums, so prefill and decode round alike.
                Vector256<float> sum = Vector256<float>.Zero;
                for (int b = 0; b < {{blocks}}; b++)
                {
                    ref byte weights = ref Unsafe.Add(ref group, {{weightsStart}} + b * {{blockWeights}});
                    if (prefetch != 0)
                        Prefetch.Lines(ref Unsafe.Add(ref weights, prefetch), {{blockWeights}});
                    ref sbyte xb = ref Unsafe.Add(ref x, b * 32);
                    // Two chains of integer sums, the slices alternating between them, to overlap the dot products' latency.
                    Vector256<int> even = Vector256.Create(-(Unsafe.Add(ref xSums, b) << {{shift}})), odd = Vector256<int>.Zero;
            """);
        if (q8)
        {
            w.Line($$"""
                        for (nint k = 0; k < 8; k += 2)
                        {
                            even = BlockKernels.MultiplyAddQuads(even, Vector256.LoadUnsafe(ref weights, (nuint)(k * 32)), BlockKernels.Broadcast4(ref Unsafe.Add(ref xb, k * 4)));
                            odd = BlockKernels.MultiplyAddQuads(odd, Vector256.LoadUnsafe(ref weights, (nuint)(k * 32 + 32)), BlockKernels.Broadcast4(ref Unsafe.Add(ref xb, k * 4 + 4)));
                        }
                """);
        }
        else
        {
            w.Line($$"""
                        for (nint k = 0; k < 4; k++)
                        {
                            Vector256<byte> packed = Vector256.LoadUnsafe(ref weights, (nuint)(k * 32));
                            even = BlockKernels.MultiplyAddQuads(even, packed & Vector256.Create((byte)0x0F), BlockKernels.Broadcast4(ref Unsafe.Add(ref xb, k * 4)));
                            odd = BlockKernels.MultiplyAddQuads(odd, Vector256.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F), BlockKernels.Broadcast4(ref Unsafe.Add(ref xb, k * 4 + 16)));
                        }
                """);
        }
        w.Line($$"""
                    Vector256<float> scales = KernelMath.HalfToSingle8(ref Unsafe.Add(ref group, b * {{2 * GroupRows}})) * Vector256.Create(Unsafe.Add(ref xScales, b));
                    sum = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(even + odd), scales, sum);
                }
                return sum;
            }

            /// <summary>
            /// The F16 row scales of a pair of {{format}} groups {{cols}} wide (the group at <paramref name="pair"/> and the next) as F32:
            /// scales: [{{blocks}}, 16], block b's 8 scales of the first group, then of the second.
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
            private static void {{ScalesName(format, cols)}}(ref byte pair, ref float scales)
            {
                ref byte second = ref Unsafe.Add(ref pair, {{GroupRows * blocks * blockBytes}});
                for (int b = 0; b < {{blocks}}; b++)
                {
                    KernelMath.HalfToSingle8(ref Unsafe.Add(ref pair, b * {{2 * GroupRows}})).StoreUnsafe(ref scales, (nuint)(b * 16));
                    KernelMath.HalfToSingle8(ref Unsafe.Add(ref second, b * {{2 * GroupRows}})).StoreUnsafe(ref scales, (nuint)(b * 16 + 8));
                }
            }

            """);

        // The tile: accumulators a0..a{tile-1} (first group), b0.. (second group), one per token.
        string[] first = Enumerable.Range(0, tile).Select(i => $"a{i}").ToArray(), second = Enumerable.Range(0, tile).Select(i => $"b{i}").ToArray();
        w.Line($$"""
            /// <summary>
            /// {{tile}} consecutive tokens × a pair of {{format}} groups {{cols}} wide (16 rows): y[t, r] (+)= Σ_b wScale[r, b]·xScales[t, b]·Σ_i w[r, b, i]·x[t, b, i].
            /// pair: two groups, each {{layout}}; scales: [{{blocks}}, 16] the pair's row scales as F32 ({{ScalesName(format, cols)}});
            /// x: [{{tile}}, {{cols}}] int8; xScales, xSums: [{{tile}}, {{blocks}}]; y: the first of the 16 rows of token 0, its rows <paramref name="rows"/> floats apart.
            /// Each weight slice is loaded once for the {{tile}} tokens; the {{2 * tile}} integer and {{2 * tile}} float sums stay in registers.
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
            private static void {{GroupName(format, cols, tile)}}(ref byte pair, ref float scales, ref sbyte x, ref float xScales, ref int xSums, ref float y, int rows, bool accumulate)
            {
                ref byte second = ref Unsafe.Add(ref pair, {{GroupRows * blocks * blockBytes}});
                Vector256<float> {{string.Join(", ", first.Concat(second).Select(a => $"{a} = Vector256<float>.Zero"))}};
                for (int b = 0; b < {{blocks}}; b++)
                {
                    ref byte firstWeights = ref Unsafe.Add(ref pair, {{weightsStart}} + b * {{blockWeights}});
                    ref byte secondWeights = ref Unsafe.Add(ref second, {{weightsStart}} + b * {{blockWeights}});
                    ref sbyte xb = ref Unsafe.Add(ref x, b * 32);
                    // Integer sums per token and group, each starting at −{{(q8 ? 128 : 8)}}·Σx of the token's block.
            """);
        for (int i = 0; i < tile; i++)
            w.Line($"        Vector256<int> {first[i]}i = Vector256.Create(-(Unsafe.Add(ref xSums, {Plus(i * blocks, "b")}) << {shift})), {second[i]}i = {first[i]}i;");
        if (q8)
        {
            w.Line("        for (nint k = 0; k < 8; k++) // a native-sized index: each token's offset folds into its load's address");
            w.Line("        {");
            w.Line("            Vector256<byte> firstSlice = Vector256.LoadUnsafe(ref firstWeights, (nuint)(k * 32)), secondSlice = Vector256.LoadUnsafe(ref secondWeights, (nuint)(k * 32));");
            for (int i = 0; i < tile; i++)
            {
                w.Line($"            Vector256<sbyte> x{i} = BlockKernels.Broadcast4(ref Unsafe.Add(ref xb, {Plus(i * cols, "k * 4")}));");
                w.Line($"            {first[i]}i = BlockKernels.MultiplyAddQuads({first[i]}i, firstSlice, x{i});");
                w.Line($"            {second[i]}i = BlockKernels.MultiplyAddQuads({second[i]}i, secondSlice, x{i});");
            }
            w.Line("        }");
        }
        else
        {
            w.Line("        for (nint k = 0; k < 4; k++) // a native-sized index: each token's offset folds into its load's address");
            w.Line("        {");
            w.Line("            Vector256<byte> firstPacked = Vector256.LoadUnsafe(ref firstWeights, (nuint)(k * 32)), secondPacked = Vector256.LoadUnsafe(ref secondWeights, (nuint)(k * 32));");
            w.Line("            // Low nibbles: weights 4k..4k+3 of each row; high nibbles: weights 16+4k..16+4k+3.");
            w.Line("            Vector256<byte> firstLow = firstPacked & Vector256.Create((byte)0x0F), secondLow = secondPacked & Vector256.Create((byte)0x0F);");
            w.Line("            Vector256<byte> firstHigh = Vector256.ShiftRightLogical(firstPacked.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F);");
            w.Line("            Vector256<byte> secondHigh = Vector256.ShiftRightLogical(secondPacked.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F);");
            for (int i = 0; i < tile; i++)
            {
                w.Line($"            Vector256<sbyte> x{i} = BlockKernels.Broadcast4(ref Unsafe.Add(ref xb, {Plus(i * cols, "k * 4")})), x{i}High = BlockKernels.Broadcast4(ref Unsafe.Add(ref xb, {Plus(i * cols + 16, "k * 4")}));");
                w.Line($"            {first[i]}i = BlockKernels.MultiplyAddQuads(BlockKernels.MultiplyAddQuads({first[i]}i, firstLow, x{i}), firstHigh, x{i}High);");
                w.Line($"            {second[i]}i = BlockKernels.MultiplyAddQuads(BlockKernels.MultiplyAddQuads({second[i]}i, secondLow, x{i}), secondHigh, x{i}High);");
            }
            w.Line("        }");
        }
        w.Line("        Vector256<float> firstScales = Vector256.LoadUnsafe(ref scales, (nuint)(b * 16)), secondScales = Vector256.LoadUnsafe(ref scales, (nuint)(b * 16 + 8));");
        for (int i = 0; i < tile; i++)
        {
            w.Line($"        Vector256<float> d{i} = Vector256.Create(Unsafe.Add(ref xScales, {Plus(i * blocks, "b")}));");
            w.Line($"        {first[i]} = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle({first[i]}i), firstScales * d{i}, {first[i]});");
            w.Line($"        {second[i]} = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle({second[i]}i), secondScales * d{i}, {second[i]});");
        }
        w.Line("    }");
        WriteStoreTile(w, tile, i => first[i], i => second[i], "rows", $"{GroupRows}", $"{GroupRows}");
    }

    /// <summary>
    /// Ints of a Q4_K group's unpacked scales per super-block in a pair's scratch (<see cref="WriteQ4KGroupProducts"/>):
    /// 8 vectors of sub-block scales, 8 of mins (each twice, as int16 pairs), d and −dmin as F32, 8 lanes each.
    /// </summary>
    private const int Q4KScratchInts = 18 * GroupRows;

    /// <summary>
    /// The group products of Q4_K matrices <paramref name="cols"/> wide over the kernel layout, with llama.cpp's integer
    /// math (<c>ggml_vec_dot_q4_K_q8_K</c>) in one int32 lane per row: per 32-weight sub-block s, the byte dot products of
    /// the nibbles and Q8_K activations times the row's 6-bit scale; minus the row's 6-bit mins times the activations'
    /// sub-block sums; the two scaled by d·dx and dmin·dx per super-block. One token × one group (8 rows) unpacks the
    /// scales as it goes; <paramref name="tile"/> tokens × a pair of groups (16 rows) reads them unpacked once per pair.
    /// </summary>
    private static void WriteQ4KGroupProducts(SourceWriter w, int cols, int tile)
    {
        const ComputeFormat format = ComputeFormat.Q4_K;
        int superBlocks = cols / FormatFacts.SuperBlock, blockBytes = FormatFacts.BlockBytes(format), groupBlock = GroupRows * blockBytes;
        int sums = cols / FormatFacts.SuperBlockSumWidth, scalesAt = 4 * GroupRows, nibblesAt = scalesAt + 12 * GroupRows;
        string layout = $"per super-block [8 F16 d][8 F16 dmin][3 slices × 8 rows × 4 bytes of 6-bit scales and mins][32 slices × 8 rows × 4 nibble bytes] ({groupBlock} bytes)";
        w.Line($$"""
            /// <summary>
            /// One token × one group of 8 rows of a Q4_K matrix {{cols}} wide: lane r is
            /// Σ_sb xScales[sb]·(d[r, sb]·Σ_s scale[r, sb, s]·Σ_i q[r, sb, s, i]·x[sb, s, i] − dmin[r, sb]·Σ_s min[r, sb, s]·Σx[sb, s]).
            /// group: {{layout}}; x: [{{cols}}] int8; xScales: [{{superBlocks}}]; xSums: [{{sums}}] (the sums of each 16 int8 values).
            /// <paramref name="prefetch"/>: bytes ahead of each super-block to request (0: none).
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
            private static Vector256<float> {{GroupName(format, cols, 1)}}(ref byte group, ref sbyte x, ref float xScales, ref short xSums, int prefetch)
            {
                Vector256<float> sum = Vector256<float>.Zero;
                for (int sb = 0; sb < {{superBlocks}}; sb++)
                {
                    ref byte block = ref Unsafe.Add(ref group, sb * {{groupBlock}});
                    if (prefetch != 0)
                        Prefetch.Lines(ref Unsafe.Add(ref block, prefetch), {{groupBlock}});
                    BlockKernels.UnpackQ4KScales(ref Unsafe.Add(ref block, {{scalesAt}}), out Vector256<int> scales03, out Vector256<int> scales47, out Vector256<int> mins03, out Vector256<int> mins47);
                    Vector256<int> sumi = Vector256<int>.Zero, summ = Vector256<int>.Zero;
                    for (int j = 0; j < 4; j++)
                    {
                        // 64 weights: sub-block 2j in the low nibbles, 2j + 1 in the high ones, each 8 slices of 4 weights × 8 rows.
                        ref byte slices = ref Unsafe.Add(ref block, {{nibblesAt}} + j * {{8 * 4 * GroupRows}});
                        ref sbyte xj = ref Unsafe.Add(ref x, sb * 256 + j * 64);
                        Vector256<int> low = Vector256<int>.Zero, high = Vector256<int>.Zero;
                        for (nint k = 0; k < 8; k++)
                        {
                            Vector256<byte> packed = Vector256.LoadUnsafe(ref slices, (nuint)(k * 32));
                            low = BlockKernels.MultiplyAddQuads(low, packed & Vector256.Create((byte)0x0F), BlockKernels.Broadcast4(ref Unsafe.Add(ref xj, k * 4)));
                            high = BlockKernels.MultiplyAddQuads(high, Vector256.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F), BlockKernels.Broadcast4(ref Unsafe.Add(ref xj, 32 + k * 4)));
                        }
                        // Byte 2j % 4 and 2j % 4 + 1 of the lanes: the rows' scales of sub-blocks 2j and 2j + 1.
                        Vector256<int> scales = j < 2 ? scales03 : scales47;
                        sumi += low * (Vector256.ShiftRightLogical(scales, j % 2 * 16) & Vector256.Create(0xFF))
                            + high * (Vector256.ShiftRightLogical(scales, j % 2 * 16 + 8) & Vector256.Create(0xFF));
                    }
                    for (int s = 0; s < 8; s++)
                    {
                        // The row's min of sub-block s in both int16 halves of its lane, against the two sums of 16 of x's sub-block s.
                        Vector256<int> min = Vector256.ShiftRightLogical(s < 4 ? mins03 : mins47, s % 4 * 8) & Vector256.Create(0xFF);
                        summ = BlockKernels.MultiplyAddPairs(summ, (min | (min << 16)).AsInt16(), BlockKernels.Broadcast2(ref Unsafe.Add(ref xSums, sb * 16 + 2 * s)));
                    }
                    Vector256<float> dx = Vector256.Create(Unsafe.Add(ref xScales, sb));
                    sum = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(sumi), KernelMath.HalfToSingle8(ref block) * dx,
                        Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(summ), -KernelMath.HalfToSingle8(ref Unsafe.Add(ref block, {{2 * GroupRows}})) * dx, sum));
                }
                return sum;
            }

            /// <summary>
            /// The unpacked scales of a pair of Q4_K groups {{cols}} wide (the group at <paramref name="pair"/> and the next):
            /// scales: [{{superBlocks}}, 2 groups, 18, 8]: per super-block and group, the 8 rows' scale of sub-blocks 0..7 (int32),
            /// their min of sub-blocks 0..7 (in both int16 halves), d and −dmin (F32).
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
            private static void {{ScalesName(format, cols)}}(ref byte pair, ref int scales)
            {
                for (int g = 0; g < 2; g++)
                {
                    for (int sb = 0; sb < {{superBlocks}}; sb++)
                    {
                        ref byte block = ref Unsafe.Add(ref pair, (g * {{superBlocks}} + sb) * {{groupBlock}});
                        ref int to = ref Unsafe.Add(ref scales, (sb * 2 + g) * {{Q4KScratchInts}});
                        BlockKernels.UnpackQ4KScales(ref Unsafe.Add(ref block, {{scalesAt}}), out Vector256<int> scales03, out Vector256<int> scales47, out Vector256<int> mins03, out Vector256<int> mins47);
                        for (int s = 0; s < 8; s++)
                        {
                            (Vector256.ShiftRightLogical(s < 4 ? scales03 : scales47, s % 4 * 8) & Vector256.Create(0xFF)).StoreUnsafe(ref to, (nuint)(s * 8));
                            Vector256<int> min = Vector256.ShiftRightLogical(s < 4 ? mins03 : mins47, s % 4 * 8) & Vector256.Create(0xFF);
                            (min | (min << 16)).StoreUnsafe(ref to, (nuint)(64 + s * 8));
                        }
                        KernelMath.HalfToSingle8(ref block).AsInt32().StoreUnsafe(ref to, 128);
                        (-KernelMath.HalfToSingle8(ref Unsafe.Add(ref block, {{2 * GroupRows}}))).AsInt32().StoreUnsafe(ref to, 136);
                    }
                }
            }

            """);

        // The tile: per token i, integer sums a{i}i/b{i}i (first/second group) over a super-block, the current sub-block's
        // a{i}c/b{i}c, and the float sums a{i}/b{i}.
        string[] first = Enumerable.Range(0, tile).Select(i => $"a{i}").ToArray(), second = Enumerable.Range(0, tile).Select(i => $"b{i}").ToArray();
        string[] all = first.Concat(second).ToArray();
        w.Line($$"""
            /// <summary>
            /// {{tile}} consecutive tokens × a pair of Q4_K groups {{cols}} wide (16 rows): y[t, r] (+)= the sum of {{GroupName(format, cols, 1)}} for each.
            /// pair: two groups, each {{layout}}; scales: the pair's unpacked scales ({{ScalesName(format, cols)}});
            /// x: [{{tile}}, {{cols}}] int8; xScales: [{{tile}}, {{superBlocks}}]; xSums: [{{tile}}, {{sums}}]; y: the first of the 16 rows of token 0, its rows <paramref name="rows"/> floats apart.
            /// Each weight slice is loaded once per nibble for the {{tile}} tokens; the integer sums stay in registers, the float sums on the stack.
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
            private static void {{GroupName(format, cols, tile)}}(ref byte pair, ref int scales, ref sbyte x, ref float xScales, ref short xSums, ref float y, int rows, bool accumulate)
            {
                ref byte second = ref Unsafe.Add(ref pair, {{superBlocks * groupBlock}});
                // The float sums [token i of the first group, then of the second] live on the stack, updated once per
                // super-block: the registers the byte dot products can accumulate in (ymm0-15 for vpdpbusd) stay free for
                // the integer sums.
                Span<Vector256<float>> floatSums = stackalloc Vector256<float>[{{2 * tile}}];
                floatSums.Clear(); // the app may skip locals' initialization
                for (int sb = 0; sb < {{superBlocks}}; sb++)
                {
                    ref int firstScales = ref Unsafe.Add(ref scales, sb * {{2 * Q4KScratchInts}});
                    ref int secondScales = ref Unsafe.Add(ref firstScales, {{Q4KScratchInts}});
                    Vector256<int> {{string.Join(", ", all.Select(a => $"{a}i = Vector256<int>.Zero"))}};
                    for (int j = 0; j < 4; j++)
                    {
                        ref byte firstSlices = ref Unsafe.Add(ref pair, sb * {{groupBlock}} + {{nibblesAt}} + j * {{8 * 4 * GroupRows}});
                        ref byte secondSlices = ref Unsafe.Add(ref second, sb * {{groupBlock}} + {{nibblesAt}} + j * {{8 * 4 * GroupRows}});
                        ref sbyte xj = ref Unsafe.Add(ref x, sb * 256 + j * 64);
            """);
        foreach (bool high in new[] { false, true })
        {
            string sub = high ? "2 * j + 1" : "2 * j";
            w.Line($"            // Sub-block {sub}: the {(high ? "high" : "low")} nibbles, weights 64j + {(high ? "32 + " : "")}4k .. + 3 of slice k.");
            w.Line(high
                ? $"            {string.Join(" = ", all.Select(a => $"{a}c"))} = Vector256<int>.Zero;"
                : $"            Vector256<int> {string.Join(", ", all.Select(a => $"{a}c = Vector256<int>.Zero"))};");
            w.Line("            for (nint k = 0; k < 8; k++) // a native-sized index: each token's offset folds into its load's address");
            w.Line("            {");
            string nibble(string packed) => high
                ? $"Vector256.ShiftRightLogical(Vector256.LoadUnsafe(ref {packed}, (nuint)(k * 32)).AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F)"
                : $"Vector256.LoadUnsafe(ref {packed}, (nuint)(k * 32)) & Vector256.Create((byte)0x0F)";
            w.Line($"                Vector256<byte> firstNibbles = {nibble("firstSlices")};");
            w.Line($"                Vector256<byte> secondNibbles = {nibble("secondSlices")};");
            for (int i = 0; i < tile; i++)
            {
                w.Line($"                Vector256<sbyte> x{i} = BlockKernels.Broadcast4(ref Unsafe.Add(ref xj, {Plus(i * cols + (high ? 32 : 0), "k * 4")}));");
                w.Line($"                {first[i]}c = BlockKernels.MultiplyAddQuads({first[i]}c, firstNibbles, x{i});");
                w.Line($"                {second[i]}c = BlockKernels.MultiplyAddQuads({second[i]}c, secondNibbles, x{i});");
            }
            w.Line("            }");
            w.Line($"            Vector256<int> first{(high ? "High" : "Low")} = Vector256.LoadUnsafe(ref firstScales, (nuint)(({sub}) * 8)), second{(high ? "High" : "Low")} = Vector256.LoadUnsafe(ref secondScales, (nuint)(({sub}) * 8));");
            for (int i = 0; i < tile; i++)
            {
                w.Line($"            {first[i]}i += {first[i]}c * first{(high ? "High" : "Low")};");
                w.Line($"            {second[i]}i += {second[i]}c * second{(high ? "High" : "Low")};");
            }
        }
        w.Line("        }");
        w.Line("        // The mins: per sub-block s, the rows' min against the token's two sums of 16 (int16 pairs).");
        w.Line($"        Vector256<int> {string.Join(", ", all.Select(a => $"{a}m = Vector256<int>.Zero"))};");
        w.Line("        for (int s = 0; s < 8; s++)");
        w.Line("        {");
        w.Line("            Vector256<short> firstMins = Vector256.LoadUnsafe(ref firstScales, (nuint)(64 + s * 8)).AsInt16(), secondMins = Vector256.LoadUnsafe(ref secondScales, (nuint)(64 + s * 8)).AsInt16();");
        for (int i = 0; i < tile; i++)
        {
            w.Line($"            Vector256<short> sums{i} = BlockKernels.Broadcast2(ref Unsafe.Add(ref xSums, {Plus(i * sums, "sb * 16 + 2 * s")}));");
            w.Line($"            {first[i]}m = BlockKernels.MultiplyAddPairs({first[i]}m, firstMins, sums{i});");
            w.Line($"            {second[i]}m = BlockKernels.MultiplyAddPairs({second[i]}m, secondMins, sums{i});");
        }
        w.Line("        }");
        w.Line("        Vector256<float> firstD = Vector256.LoadUnsafe(ref firstScales, 128).AsSingle(), firstNegativeMin = Vector256.LoadUnsafe(ref firstScales, 136).AsSingle();");
        w.Line("        Vector256<float> secondD = Vector256.LoadUnsafe(ref secondScales, 128).AsSingle(), secondNegativeMin = Vector256.LoadUnsafe(ref secondScales, 136).AsSingle();");
        for (int i = 0; i < tile; i++)
        {
            w.Line($"        Vector256<float> dx{i} = Vector256.Create(Unsafe.Add(ref xScales, {Plus(i * superBlocks, "sb")}));");
            w.Line($"        floatSums[{i}] = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle({first[i]}i), firstD * dx{i}, Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle({first[i]}m), firstNegativeMin * dx{i}, floatSums[{i}]));");
            w.Line($"        floatSums[{tile + i}] = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle({second[i]}i), secondD * dx{i}, Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle({second[i]}m), secondNegativeMin * dx{i}, floatSums[{tile + i}]));");
        }
        w.Line("    }");
        WriteStoreTile(w, tile, i => $"floatSums[{i}]", i => $"floatSums[{tile + i}]", "rows", $"{GroupRows}", $"{GroupRows}");
    }

    /// <summary>
    /// The prefill tile of Q6_K matrices <paramref name="cols"/> wide, over 16 rows unpacked by the runtime's Q6KGroups,
    /// with llama.cpp's integer math (<c>ggml_vec_dot_q6_K_q8_K</c>) in one int32 lane per row: per super-block, −32·Σ_j
    /// scale_j·bsum_j (the weights are q + 32), plus per 16-weight sub-block j the byte dot products of the weights and
    /// Q8_K activations times the row's scale_j; the total scaled by d·dx into a float sum.
    /// </summary>
    private static void WriteQ6KGroupProducts(SourceWriter w, int cols, int tile)
    {
        const ComputeFormat format = ComputeFormat.Q6_K;
        int superBlocks = cols / FormatFacts.SuperBlock, sums = cols / FormatFacts.SuperBlockSumWidth;
        string[] first = Enumerable.Range(0, tile).Select(i => $"a{i}").ToArray(), second = Enumerable.Range(0, tile).Select(i => $"b{i}").ToArray();
        string[] all = first.Concat(second).ToArray();
        w.Line($$"""
            /// <summary>
            /// {{tile}} consecutive tokens × 16 rows of a Q6_K matrix {{cols}} wide: y[t, r] (+)= Σ_sb d[r, sb]·xScales[t, sb]·Σ_j scale[r, sb, j]·Σ_i q[r, sb, j, i]·x[t, sb, j, i]
            /// for r &lt; <paramref name="rowCount"/>. unpacked: [{{superBlocks}} super-blocks] of the 16 rows as Q6KGroups.Unpack leaves them (two groups of 8 rows:
            /// the weights q + 32 in slices of 4 bytes × 8 rows, the int32 scales, the −32·scale int16 pairs and F32 d);
            /// x: [{{tile}}, {{cols}}] int8; xScales: [{{tile}}, {{superBlocks}}]; xSums: [{{tile}}, {{sums}}]; y: the first of the 16 rows of token 0, its rows <paramref name="yStride"/> floats apart.
            /// Each weight slice is loaded once for the {{tile}} tokens.
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
            private static void {{GroupName(format, cols, tile)}}(ref byte unpacked, ref sbyte x, ref float xScales, ref short xSums, ref float y, int yStride, int rowCount, bool accumulate)
            {
                // The float sums [token i of the first group, then of the second] live on the stack, updated once per
                // super-block: the registers the byte dot products can accumulate in (ymm0-15 for vpdpbusd) stay free for
                // the integer sums.
                Span<Vector256<float>> floatSums = stackalloc Vector256<float>[{{2 * tile}}];
                floatSums.Clear(); // the app may skip locals' initialization
                for (int sb = 0; sb < {{superBlocks}}; sb++)
                {
                    ref byte block = ref Unsafe.Add(ref unpacked, sb * Q6KGroups.SuperBlockBytes);
                    ref int scales = ref Unsafe.As<byte, int>(ref Unsafe.Add(ref block, Q6KGroups.ScalesAt));
                    ref int offsetScales = ref Unsafe.As<byte, int>(ref Unsafe.Add(ref block, Q6KGroups.OffsetScalesAt));
                    ref sbyte xb = ref Unsafe.Add(ref x, sb * 256);
                    // Integer sums per token and group, starting at −32·Σ_j scale_j·bsum_j: the pairs of sub-blocks 2p, 2p + 1
                    // against the token's two sums of 16.
                    Vector256<int> {{string.Join(", ", all.Select(a => $"{a}i = Vector256<int>.Zero"))}};
                    for (int p = 0; p < 8; p++)
                    {
                        Vector256<short> firstOffsets = Vector256.LoadUnsafe(ref offsetScales, (nuint)(p * 16)).AsInt16(), secondOffsets = Vector256.LoadUnsafe(ref offsetScales, (nuint)(p * 16 + 8)).AsInt16();
            """);
        for (int i = 0; i < tile; i++)
        {
            w.Line($"            Vector256<short> sums{i} = BlockKernels.Broadcast2(ref Unsafe.Add(ref xSums, {Plus(i * sums, "sb * 16 + 2 * p")}));");
            w.Line($"            {first[i]}i = BlockKernels.MultiplyAddPairs({first[i]}i, firstOffsets, sums{i});");
            w.Line($"            {second[i]}i = BlockKernels.MultiplyAddPairs({second[i]}i, secondOffsets, sums{i});");
        }
        w.Line("        }");
        w.Line("        for (int j = 0; j < 16; j++)");
        w.Line("        {");
        w.Line("            // Sub-block j: 16 weights, slices 4j .. 4j + 3 of each group.");
        w.Line("            ref byte firstSlices = ref Unsafe.Add(ref block, Q6KGroups.WeightsAt + j * 128);");
        w.Line("            ref byte secondSlices = ref Unsafe.Add(ref firstSlices, Q6KGroups.GroupWeightBytes);");
        w.Line("            ref sbyte xj = ref Unsafe.Add(ref xb, j * 16);");
        w.Line($"            Vector256<int> {string.Join(", ", all.Select(a => $"{a}c = Vector256<int>.Zero"))};");
        w.Line("            for (nint k = 0; k < 4; k++) // a native-sized index: each token's offset folds into its load's address");
        w.Line("            {");
        w.Line("                Vector256<byte> firstWeights = Vector256.LoadUnsafe(ref firstSlices, (nuint)(k * 32)), secondWeights = Vector256.LoadUnsafe(ref secondSlices, (nuint)(k * 32));");
        for (int i = 0; i < tile; i++)
        {
            w.Line($"                Vector256<sbyte> x{i} = BlockKernels.Broadcast4(ref Unsafe.Add(ref xj, {Plus(i * cols, "k * 4")}));");
            w.Line($"                {first[i]}c = BlockKernels.MultiplyAddQuads({first[i]}c, firstWeights, x{i});");
            w.Line($"                {second[i]}c = BlockKernels.MultiplyAddQuads({second[i]}c, secondWeights, x{i});");
        }
        w.Line("            }");
        w.Line("            Vector256<int> firstScales = Vector256.LoadUnsafe(ref scales, (nuint)(j * 16)), secondScales = Vector256.LoadUnsafe(ref scales, (nuint)(j * 16 + 8));");
        for (int i = 0; i < tile; i++)
        {
            w.Line($"            {first[i]}i += {first[i]}c * firstScales;");
            w.Line($"            {second[i]}i += {second[i]}c * secondScales;");
        }
        w.Line("        }");
        w.Line("        ref float d = ref Unsafe.As<byte, float>(ref Unsafe.Add(ref block, Q6KGroups.DAt));");
        w.Line("        Vector256<float> firstD = Vector256.LoadUnsafe(ref d), secondD = Vector256.LoadUnsafe(ref d, 8);");
        for (int i = 0; i < tile; i++)
        {
            w.Line($"        Vector256<float> dx{i} = Vector256.Create(Unsafe.Add(ref xScales, {Plus(i * superBlocks, "sb")}));");
            w.Line($"        floatSums[{i}] = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle({first[i]}i), firstD * dx{i}, floatSums[{i}]);");
            w.Line($"        floatSums[{tile + i}] = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle({second[i]}i), secondD * dx{i}, floatSums[{tile + i}]);");
        }
        w.Line("    }");
        w.Line($"    // Rows past rowCount (a last, partial set of 16) were computed from copies of the last row and are not stored.");
        w.Line($"    int firstRows = Math.Min({GroupRows}, rowCount), secondRows = Math.Max(0, rowCount - {GroupRows});");
        WriteStoreTile(w, tile, i => $"floatSums[{i}]", i => $"floatSums[{tile + i}]", "yStride", "firstRows", "secondRows");
    }

    /// <summary>
    /// The end of a tile: each token's sums of the first and the second group of its 16 rows (<paramref name="firstSums"/>,
    /// <paramref name="secondSums"/> of the token) stored into y, whose tokens are <paramref name="stride"/> floats apart;
    /// <paramref name="firstRows"/> and <paramref name="secondRows"/> say how many rows of each group are stored.
    /// </summary>
    private static void WriteStoreTile(SourceWriter w, int tile, Func<int, string> firstSums, Func<int, string> secondSums, string stride, string firstRows, string secondRows)
    {
        for (int i = 0; i < tile; i++)
        {
            string row = i == 0 ? "" : i == 1 ? stride : $"{i} * {stride}";
            w.Line($"    StoreGroup({(i == 0 ? "ref y" : $"ref Unsafe.Add(ref y, {row})")}, {firstSums(i)}, {firstRows}, accumulate);");
            w.Line($"    StoreGroup(ref Unsafe.Add(ref y, {(i == 0 ? "" : row + " + ")}{GroupRows}), {secondSums(i)}, {secondRows}, accumulate);");
        }
        w.Line("}");
    }

    /// <summary><paramref name="constant"/> + <paramref name="expression"/> as short as it can be written.</summary>
    private static string Plus(int constant, string expression) =>
        constant == 0 ? expression : int.TryParse(expression, out int value) ? Emitter.Int(constant + value) : $"{constant} + {expression}";

    /// <summary>The store of a group's 8 sums into its rows of y (the first <c>rows</c> of them: a last group may be partial).</summary>
    public static void WriteStoreGroup(SourceWriter w) => w.Line("""
        /// <summary>y[0..rows) = sums (y += sums when <paramref name="accumulate"/>): one group's outputs; rows &lt; 8 for a last, partial group.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
        private static void StoreGroup(ref float y, Vector256<float> sums, int rows, bool accumulate)
        {
            if (rows == 8)
            {
                (accumulate ? Vector256.LoadUnsafe(ref y) + sums : sums).StoreUnsafe(ref y);
                return;
            }
            for (int r = 0; r < rows; r++)
                Store(ref Unsafe.Add(ref y, r), sums[r], accumulate);
        }
        """);

    private static int Blocks(MatMulKernel k) => k.Cols / FormatFacts.BlockWeights(k.Format);
}
