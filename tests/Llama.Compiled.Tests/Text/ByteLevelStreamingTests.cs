using System.Collections.Generic;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// Streaming byte-level tokens: the goldens' ids fed one at a time, as a model would produce them. Emoji,
/// CJK and accented characters span several tokens; no chunk may show U+FFFD for them.
/// </summary>
public class ByteLevelStreamingTests
{
    public static TheoryData<string> Names => new(TokenizerGoldens.Names);

    [Theory]
    [MemberData(nameof(Names))]
    public void GoldensStreamedTokenByTokenGiveTheDecodedTextWithoutReplacementCharacters(string name)
    {
        ByteLevelBpeTokenizer tokenizer = TokenizerGoldens.Tokenizer(name);
        int[] context = tokenizer.BeginningOfSentenceId is int bos ? [bos] : [];
        int splitCharacters = 0;
        foreach (TokenizerGoldens.Golden g in TokenizerGoldens.Read(name))
        {
            var decoder = new StreamingDecoder(tokenizer, context);
            var chunks = new List<string>();
            foreach (int id in g.Ids)
            {
                string chunk = decoder.Append(id);
                Assert.DoesNotContain('\uFFFD', chunk);
                chunks.Add(chunk);
                // Decoding the id alone is what a naive streamer prints: count how often it would be wrong.
                if (tokenizer.Decode([id]).Contains('\uFFFD'))
                    splitCharacters++;
            }
            chunks.Add(decoder.Flush());
            Assert.Equal(g.Decoded, string.Concat(chunks));
        }
        // The corpus does exercise characters cut across tokens (else this test could not fail).
        Assert.True(splitCharacters > 5, $"only {splitCharacters} tokens end inside a character");
    }

    [Fact]
    public void AChunkIsHeldBackUntilTheCharacterCompletes()
    {
        ByteLevelBpeTokenizer llama3 = TokenizerGoldens.Tokenizer("llama3");
        // 👩‍👩‍👧‍👦 is 25 bytes; Llama 3 encodes it in several byte-level tokens that end mid-character.
        IReadOnlyList<int> ids = llama3.EncodeToIds("a 👩‍👩‍👧‍👦", addSpecialTokens: false);
        var decoder = new StreamingDecoder(llama3, [128000]);
        var chunks = ids.Select(decoder.Append).ToList();
        Assert.Contains(chunks, c => c.Length == 0); // something was held back
        Assert.Equal("a 👩‍👩‍👧‍👦", string.Concat(chunks) + decoder.Flush());
    }

    [Fact]
    public void BytesThatNeverCompleteComeOutOnFlush()
    {
        ByteLevelBpeTokenizer qwen = TokenizerGoldens.Tokenizer("qwen3");
        // The first byte of "日" (E6) alone: a model that stops there leaves an incomplete character.
        int e6 = qwen.MapTokenToId("\u00E6")!.Value; // byte 0xE6 is spelled 'æ' (printable Latin-1 bytes stand for themselves)
        var decoder = new StreamingDecoder(qwen, []);
        Assert.Equal("ok", decoder.Append(qwen.EncodeToIds("ok")[0]));
        Assert.Equal("", decoder.Append(e6));
        Assert.Equal("\uFFFD", decoder.Flush());
    }
}
