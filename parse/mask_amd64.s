//go:build amd64 && !purego

#include "textflag.h"

// CLASSIFY sets R to the 16-bit mask of the bytes at OFF(SI) that are '"'
// (X1), '\\' (X2), or below 0x20 as signed bytes (X3 holds 0x20): control
// characters and every byte >= 0x80.
#define CLASSIFY(OFF, R) \
	MOVOU OFF(SI), X0 \
	MOVO X0, X4 \
	PCMPEQB X1, X4 \
	MOVO X0, X5 \
	PCMPEQB X2, X5 \
	MOVO X3, X6 \
	PCMPGTB X0, X6 \
	POR X5, X4 \
	POR X6, X4 \
	PMOVMSKB X4, R

// func specialMasksSSE2(b []byte, masks []uint64)
TEXT ·specialMasksSSE2(SB), NOSPLIT, $0-48
	MOVQ b_base+0(FP), SI
	MOVQ masks_base+24(FP), DI
	MOVQ masks_len+32(FP), BX
	MOVQ $0x2222222222222222, DX
	MOVQ DX, X1
	PUNPCKLQDQ X1, X1
	MOVQ $0x5c5c5c5c5c5c5c5c, DX
	MOVQ DX, X2
	PUNPCKLQDQ X2, X2
	MOVQ $0x2020202020202020, DX
	MOVQ DX, X3
	PUNPCKLQDQ X3, X3

loop:
	TESTQ BX, BX
	JZ    done
	CLASSIFY(0, AX)
	CLASSIFY(16, DX)
	SHLQ $16, DX
	ORQ  DX, AX
	CLASSIFY(32, DX)
	SHLQ $32, DX
	ORQ  DX, AX
	CLASSIFY(48, DX)
	SHLQ $48, DX
	ORQ  DX, AX
	MOVQ AX, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ BX
	JMP  loop

done:
	RET

// CLASSIFY32 is CLASSIFY for 32 bytes, with Y1, Y2, Y3 as X1, X2, X3.
#define CLASSIFY32(OFF, R) \
	VMOVDQU OFF(SI), Y0 \
	VPCMPEQB Y1, Y0, Y4 \
	VPCMPEQB Y2, Y0, Y5 \
	VPCMPGTB Y0, Y3, Y6 \
	VPOR Y5, Y4, Y4 \
	VPOR Y6, Y4, Y4 \
	VPMOVMSKB Y4, R

// func specialMasksAVX2(b []byte, masks []uint64)
TEXT ·specialMasksAVX2(SB), NOSPLIT, $0-48
	MOVQ b_base+0(FP), SI
	MOVQ masks_base+24(FP), DI
	MOVQ masks_len+32(FP), BX
	MOVQ $0x22, DX
	MOVQ DX, X1
	VPBROADCASTB X1, Y1
	MOVQ $0x5c, DX
	MOVQ DX, X2
	VPBROADCASTB X2, Y2
	MOVQ $0x20, DX
	MOVQ DX, X3
	VPBROADCASTB X3, Y3

avxloop:
	TESTQ BX, BX
	JZ    avxdone
	CLASSIFY32(0, AX)
	CLASSIFY32(32, DX)
	SHLQ $32, DX
	ORQ  DX, AX
	MOVQ AX, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ BX
	JMP  avxloop

avxdone:
	VZEROUPPER
	RET
