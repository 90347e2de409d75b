using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

public class StreamingDecoderTests
{
    private static readonly Tokenizer Stories = LlamaTokenizers.Load(TestPaths.Stories260KHf);
    private static readonly Tokenizer Llama2 = LlamaTokenizers.Load(Path.Combine(TestPaths.SharedModels, "llama2-tokenizer"));

    public static TheoryData<string, string> Texts => new()
    {
        { "stories", "héllo 你好" },
        { "stories", "Once upon a time, there was a little girl named Lily. She liked to play!" },
        { "llama2", "héllo 你好" },
        // Characters missing from the vocabulary come out as byte tokens (𝄞 is four bytes, a surrogate pair in .NET).
        { "llama2", "Gâteau 🎂 für 𝄞 Ärger — ok ☃\nnext line" },
        // A text piece right after byte tokens keeps its space.
        { "stories", "你 好 a你b 😀 end" },
    };

    private static Tokenizer Get(string name) => name == "stories" ? Stories : Llama2;

    private static List<string> Stream(Tokenizer tokenizer, IReadOnlyList<int> context, IEnumerable<int> ids)
    {
        var decoder = new StreamingDecoder(tokenizer, context.ToArray());
        var chunks = new List<string>();
        foreach (int id in ids)
            chunks.Add(decoder.Append(id));
        chunks.Add(decoder.Flush());
        return chunks;
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void ChunksAddUpToTheDecodedTextWithoutBrokenCharacters(string tokenizerName, string text)
    {
        Tokenizer tokenizer = Get(tokenizerName);
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(text);

        List<string> chunks = Stream(tokenizer, ids.Take(1).ToArray(), ids.Skip(1));

        Assert.Equal(tokenizer.Decode(ids), string.Concat(chunks));
        Assert.DoesNotContain(chunks, c => c.Contains('\uFFFD'));
        Assert.True(chunks.Count(c => c.Length > 0) > 3);
    }

    [Fact]
    public void MultiByteCharactersAreHeldBackUntilComplete()
    {
        // The stories260K vocabulary has no 你: it is the byte tokens <0xE4><0xBD><0xA0> (ids 3 + byte).
        int[] ids = Stories.EncodeToIds("a 你").ToArray();
        Assert.Equal([3 + 0xE4, 3 + 0xBD, 3 + 0xA0], ids[^3..]);
        var decoder = new StreamingDecoder(Stories, ids[..^3]);

        Assert.Equal("", decoder.Append(ids[^3]));
        Assert.Equal("", decoder.Append(ids[^2]));
        Assert.Equal("你", decoder.Append(ids[^1]));
        Assert.Equal("", decoder.Flush());
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void AContinuationKeepsItsLeadingSpace(string tokenizerName, string text)
    {
        // Prompt printed as text + streamed continuation == the whole text, at every split point.
        Tokenizer tokenizer = Get(tokenizerName);
        int[] ids = tokenizer.EncodeToIds(text).ToArray();
        string whole = tokenizer.Decode(ids);

        for (int split = 1; split < ids.Length; split++)
        {
            // A prompt is whole text: it never ends inside a character.
            if (tokenizer.Decode(ids[..split]).EndsWith('\uFFFD'))
                continue;
            List<string> chunks = Stream(tokenizer, ids[..split], ids[split..]);
            Assert.Equal(whole, tokenizer.Decode(ids[..split]) + string.Concat(chunks));
        }
    }

    [Fact]
    public void FlushReturnsBytesThatNeverCompletedACharacter()
    {
        // <0xE4> is the first byte of a three-byte character; nothing follows it.
        int leadByte = 3 + 0xE4;
        var decoder = new StreamingDecoder(Stories, [1]);

        Assert.Equal("Once", decoder.Append(403));
        Assert.Equal("", decoder.Append(leadByte));
        Assert.Equal("\uFFFD", decoder.Flush());
    }

    [Fact]
    public void AfterBosTheFirstPieceLosesItsSpaceLikeLlama2c()
    {
        var decoder = new StreamingDecoder(Stories, [1]);

        Assert.Equal("Once", decoder.Append(403));
        Assert.Equal(" upon", decoder.Append(407));
        Assert.Equal("", decoder.Flush());
    }

    /// <summary>
    /// What llama2.c's run.c prints for <paramref name="ids"/> (BOS first): each piece with "▁" as a
    /// space, the piece right after BOS without its leading space, byte pieces &lt;0xNN&gt; as bytes.
    /// (run.c's safe_printf also skips lone non-ASCII bytes; here they are kept as UTF-8.)
    /// </summary>
    private static string Llama2cText(Tokenizer tokenizer, IReadOnlyList<int> ids)
    {
        Dictionary<int, string> pieces = ((SentencePieceTokenizer)tokenizer).Vocabulary.ToDictionary(kv => kv.Value, kv => kv.Key);
        var bytes = new List<byte>();
        for (int i = 1; i < ids.Count; i++)
        {
            string piece = pieces[ids[i]].Replace('\u2581', ' ');
            if (ids[i - 1] == 1 && piece.StartsWith(' '))
                piece = piece[1..];
            if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece.EndsWith('>'))
                bytes.Add(byte.Parse(piece.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
            else
                bytes.AddRange(Encoding.UTF8.GetBytes(piece));
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void PromptAndContinuationPrintAsLlama2cDoes(string tokenizerName, string text)
    {
        Tokenizer tokenizer = Get(tokenizerName);
        int[] ids = tokenizer.EncodeToIds(text).ToArray();
        string whole = Llama2cText(tokenizer, ids);

        for (int split = 1; split < ids.Length; split++)
        {
            string prompt = Llama2cText(tokenizer, ids[..split]);
            if (prompt.EndsWith('\uFFFD'))
                continue;
            Assert.Equal(whole, prompt + string.Concat(Stream(tokenizer, ids[..split], ids[split..])));
        }
    }

    [Theory]
    [InlineData(new[] { 1, 3 + 0x41, 403, 407 }, "A Once upon")]                       // byte 'A', then "▁Once"
    [InlineData(new[] { 1, 3 + 0xE4, 3 + 0xBD, 3 + 0xA0, 403 }, "\u4F60 Once")]        // 你 from bytes, then "▁Once"
    [InlineData(new[] { 1, 3 + 0x20, 403 }, "  Once")]                                  // a space byte after BOS is kept
    public void SpacesAfterBytesAreKeptUnlikeADecodeOfTheWholeSequence(int[] ids, string expected)
    {
        Assert.Equal(expected, Llama2cText(Stories, ids));

        Assert.Equal(expected, string.Concat(Stream(Stories, ids[..1], ids[1..])));
    }
}
